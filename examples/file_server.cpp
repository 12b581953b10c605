// portico example: the file server. Stores uploads from file_client in a
// directory and sends the files there to clients that ask for them: the file
// transfer of the course notes, with a protocol (file_protocol.hpp): a header
// with the name and size, the content, and a SHA-256 both sides compare.
//
// No pool thread ever waits for the disk. An upload is written to NAME.part
// with overlapped writes as it arrives; at the end the server reads NAME.part
// back (overlapped reads too), and only if its size and SHA-256 are what the
// client announced does it replace NAME with it. Whatever else ends the
// upload (a reset, a client that closes early, a wrong hash, a deadline,
// Ctrl+C) deletes NAME.part: NAME is never a truncated or mixed file, and an
// older NAME stays as it was. Two uploads of one file (the same name, or
// names the file system takes for one, such as "Report.bin" and
// "report.bin") are never received at once: the second is refused as busy
// (file_store.hpp). A download is hashed with overlapped reads, then sent
// with transmit_file, one call per 4 MiB part: the first call's head is the
// content packet (size and SHA-256), and the file's bytes go from the
// system's cache to the connection (TransmitFile on Windows; over io_uring,
// reads into a buffer and sends from it). A client that takes longer than
// --stall-timeout to read a part (or stopped reading) is dropped.
//
//   file_server [--host ADDRESS] [--port N] [--dir DIRECTORY] [--threads N] [--sessions N]
//               [--max-size BYTES] [--request-timeout SECONDS] [--stall-timeout SECONDS]
//
//   --host             address to listen on (default 0.0.0.0: every interface)
//   --port             port to listen on (default 25000; 0 lets the system choose)
//   --dir              where uploads are stored and downloads come from (default: the
//                      current directory)
//   --threads          pool threads (default 2)
//   --sessions         exit after this many clients have come and gone (default 0: never)
//   --max-size         the largest file accepted (default 4 GiB); larger ones are refused
//   --request-timeout  a request must arrive within this after connecting or after the
//                      previous answer (default 10)
//   --stall-timeout    during an upload, the longest the client may send nothing; during a
//                      download, the longest it may take to read a 4 MiB part (default 30)
//
// The first line printed is "listening on HOST:PORT". Clients are served
// concurrently. Names from the network are printed escaped, and the lines
// about connections and transfers are at most 50 per 10 s (log_limiter.hpp).
// Ctrl+C ends every session (an upload in progress is discarded, a download
// in progress is cut off) and exits.

#include <portico/portico.hpp>

#include "example_support.hpp"
#include "log_limiter.hpp"
#include "untrusted_text.hpp"

#include "file_protocol.hpp"
#include "file_store.hpp"
#include "sha256.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using file_proto::status;
using file_store::incoming_file;
using portico::endpoint;
using portico::io_context;
using portico::packet_stream;
using portico::random_access_file;
using portico::task;
using portico::tcp_acceptor;
using portico::tcp_socket;

// The file bytes of one transmit_file call of a download. The client must
// read each part within --stall-timeout: 30 s for 4 MiB is about 140 KiB/s,
// the slowest client served. Under Wine, which copies the file on the pool
// thread that made the call, a part also bounds how long that thread is kept
// from the other connections (docs/design/files.md).
constexpr std::uint64_t download_part = 4 << 20;

struct server_state {
    tcp_acceptor& acceptor;
    fs::path dir;
    unsigned session_limit;
    std::uint64_t max_size;
    std::chrono::seconds request_timeout;
    std::chrono::seconds stall_timeout;
    std::atomic<unsigned> finished{0};
    std::atomic<unsigned> dropped{0}; // closed by a deadline
    example::log_limiter log{50, std::chrono::seconds(10)};
};

// ASCII lower case: enough for the device names below, which are ASCII
// (the superscript digits have no case).
std::string lower(std::string_view s)
{
    std::string out(s);
    for (char& c : out) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    return out;
}

// snippet-begin: names
// Why `name` may not be stored, or nullptr if it may: only a plain file name,
// which lands inside --dir and means the same file on Windows as elsewhere.
const char* unsafe_name(std::string_view name)
{
    if (name.empty()) return "the name is empty";
    if (name.size() > file_proto::max_name) return "the name is longer than 200 bytes";
    if (name == "." || name == "..") return "the name is a directory reference";
    for (const char c : name) {
        if (c == '/' || c == '\\') return "the name contains a path separator";
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) return "the name contains a control character";
        if (std::string_view(":*?\"<>|").find(c) != std::string_view::npos) {
            return "the name contains a character Windows does not allow (:*?\"<>|)";
        }
    }
    // Windows drops them, so "a." would be stored as "a".
    if (name.back() == '.' || name.back() == ' ') return "the name ends with a dot or a space";
    // Devices in every directory, with any extension and spaces before it:
    // "con.txt" and "nul .txt" are devices. COM and LPT with a superscript
    // digit (UTF-8) are devices too, and CONIN$/CONOUT$ the console.
    static constexpr std::array<std::string_view, 32> devices{
        "con",  "prn",  "aux",         "nul",         "conin$",      "conout$",     "com0",        "com1",
        "com2", "com3", "com4",        "com5",        "com6",        "com7",        "com8",        "com9",
        "lpt0", "lpt1", "lpt2",        "lpt3",        "lpt4",        "lpt5",        "lpt6",        "lpt7",
        "lpt8", "lpt9", "com\xc2\xb9", "com\xc2\xb2", "com\xc2\xb3", "lpt\xc2\xb9", "lpt\xc2\xb2", "lpt\xc2\xb3"};
    std::string stem = lower(name.substr(0, name.find('.')));
    while (!stem.empty() && stem.back() == ' ') stem.pop_back();
    if (std::find(devices.begin(), devices.end(), stem) != devices.end()) return "the name is a Windows device name";
    if (lower(name).ends_with(".part")) return "names ending in .part are reserved for uploads in progress";
    return nullptr;
}
// snippet-end: names

double mib_per_second(std::uint64_t bytes, double seconds)
{
    return seconds > 0 ? static_cast<double>(bytes) / (1024.0 * 1024.0) / seconds : 0.0;
}

task<std::error_code> reply(packet_stream<tcp_socket>& ps, status code, std::uint64_t bytes,
                            const file_proto::digest& hash, std::string_view message)
{
    const auto fixed = file_proto::result_prefix(code, bytes, hash);
    auto [ec] = co_await ps.write_packet(file_proto::result, fixed, message);
    co_return ec;
}

task<> discard_until_closed(packet_stream<tcp_socket>& ps)
{
    for (;;) {
        auto [ec, pkt] = co_await ps.read_packet();
        if (ec) co_return;
    }
}

// Sends the result of an upload that failed while the client was still
// sending, then waits (at most 5 s) for the client to hang up, dropping what
// it still sends. Closing at once, with its data arriving, would reset the
// connection and could destroy the result before the client reads it: as the
// notes say, let the client be the one that disconnects.
task<> reply_and_close(packet_stream<tcp_socket>& ps, status code, std::uint64_t bytes, const file_proto::digest& hash,
                       std::string_view message)
{
    if (auto ec = co_await reply(ps, code, bytes, hash, message); ec) co_return;
    (void)ps.next_layer().shutdown_send();
    (void)co_await portico::with_timeout(ps.next_layer().context(), 5s, discard_until_closed(ps));
}

/// No hash: for answers about something never received or read.
constexpr file_proto::digest no_hash{};

// How a request ended: whether the file was stored (or sent), and why the
// connection cannot carry another request (empty: it can).
struct request_end {
    bool done = false; // stored, or sent
    std::string closed;
};

std::string describe(std::error_code ec)
{
    if (!ec) return {};
    return ec == portico::errc::eof ? "client closed" : ec.message();
}

// snippet-begin: content
// The content of one upload, from the packet after `ready` to the result.
// `file` holds NAME.part, which it deletes unless commit() succeeded.
task<request_end> receive_content(packet_stream<tcp_socket>& ps, incoming_file& file, const std::string& peer,
                                  const std::string& name, std::uint64_t size, server_state& state)
{
    const auto start = std::chrono::steady_clock::now();
    file_hash::sha256 hash;
    std::uint64_t received = 0;
    // Every way out but `stored` comes here first: NAME.part goes and both
    // names are free again before the client hears the result.
    auto failed = [&](const std::string& why) {
        file.discard();
        if (!state.log.allow()) return;
        std::printf("%s: upload of %s failed after %llu of %llu bytes: %s\n", peer.c_str(), name.c_str(),
                    static_cast<unsigned long long>(received), static_cast<unsigned long long>(size), why.c_str());
    };
    for (;;) {
        auto [ec, pkt] = co_await ps.read_packet();
        if (ec) {
            // Reset, closed early, stalled (the stream's idle timeout), Ctrl+C.
            if (ec == portico::errc::idle_timeout) {
                ++state.dropped;
                failed("stalled: no data for " + std::to_string(state.stall_timeout.count()) + " s");
            } else {
                failed(ec == portico::errc::eof ? "the client closed the connection early (end of stream)"
                                                : ec.message());
            }
            // A client that only closed its sending side can still hear why.
            if (ec == portico::errc::eof || ec == portico::errc::packet_truncated) {
                (void)co_await reply(ps, status::size_mismatch, received, no_hash,
                                     "the connection ended before the end of the file");
            }
            co_return request_end{false, describe(ec)};
        }
        if (pkt.type == file_proto::data) {
            if (pkt.body.size() > size - received) {
                failed("more data than announced");
                co_await reply_and_close(ps, status::size_mismatch, received, no_hash, "more data than announced");
                co_return request_end{false, "protocol error: more data than announced"};
            }
            // Written straight from the receive buffer (no copy), with an
            // overlapped write: the next packet is read once the disk has
            // this one, and meanwhile the pool thread serves others.
            if (auto error = co_await file.write(received, pkt.body)) {
                failed(error.message);
                co_await reply_and_close(ps, status::storage_error, received, no_hash, error.message);
                co_return request_end{false, error.message};
            }
            hash.update(pkt.body);
            received += pkt.body.size();
            continue;
        }
        if (pkt.type != file_proto::end || pkt.body.size() != std::tuple_size_v<file_proto::digest>) {
            failed("unexpected packet");
            co_await reply_and_close(ps, status::protocol_error, received, no_hash, "expected data or end");
            co_return request_end{false, "protocol error: expected data or end"};
        }
        // The end packet: the connection is in step for another upload,
        // whatever the verdict. The verdict is on what the disk holds: what
        // was received must match the sender's SHA-256, and so must the file
        // read back, before it replaces NAME.
        const file_proto::digest theirs = file_proto::get_digest(pkt.body);
        const file_proto::digest ours = hash.finish();
        status verdict = status::stored;
        std::string why;
        file_store::stored_content stored;
        if (received != size) {
            verdict = status::size_mismatch;
            why = "the content ended before the announced size";
        } else if (ours != theirs) {
            verdict = status::checksum_mismatch;
            why = "sha256 " + file_hash::hex(ours).substr(0, 16) + "... received, the sender computed " +
                  file_hash::hex(theirs).substr(0, 16) + "...";
        } else if (stored = co_await file.read_back(); stored.error) {
            verdict = status::storage_error;
            why = stored.error.message;
        } else if (stored.size != size || stored.hash != theirs) {
            verdict = status::storage_error;
            why = "the stored file is not what was received: " + std::to_string(stored.size) + " bytes, sha256 " +
                  file_hash::hex(stored.hash).substr(0, 16) + "...";
        } else if (auto error = file.commit()) {
            verdict = status::storage_error;
            why = error.message;
        }
        if (verdict != status::stored) {
            failed(why);
            const std::error_code replied = co_await reply(ps, verdict, received, ours, why);
            co_return request_end{false, describe(replied)};
        }
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        if (state.log.allow()) {
            std::printf("%s: stored %s: %llu bytes in %.2f s (%.1f MiB/s), sha256 %s matched, read back\n",
                        peer.c_str(), name.c_str(), static_cast<unsigned long long>(stored.size), seconds,
                        mib_per_second(stored.size, seconds), file_hash::hex(stored.hash).c_str());
        }
        const std::error_code replied = co_await reply(ps, status::stored, stored.size, stored.hash, "stored");
        co_return request_end{true, describe(replied)};
    }
}
// snippet-end: content

// Refuses an upload before its content: says why, and keeps the connection
// for another upload.
task<request_end> refuse(packet_stream<tcp_socket>& ps, const std::string& peer, const std::string& shown, status code,
                         const std::string& why, server_state& state)
{
    if (state.log.allow()) std::printf("%s: refused \"%s\": %s\n", peer.c_str(), shown.c_str(), why.c_str());
    const std::error_code replied = co_await reply(ps, code, 0, no_hash, why);
    co_return request_end{false, describe(replied)};
}

// The file in --dir that `name` (from the network) stands for, or why it
// may not be used.
struct target_path {
    fs::path path;
    const char* refusal = nullptr;
};

// True if `text` is well-formed UTF-8 (Unicode 15, table 3-7): no stray
// continuation byte, no overlong form, no surrogate, nothing above U+10FFFF.
bool valid_utf8(std::string_view text)
{
    for (std::size_t i = 0; i < text.size();) {
        const auto lead = static_cast<unsigned char>(text[i]);
        std::size_t length = 0;
        unsigned char low = 0x80, high = 0xBF; // the range of the byte after the lead
        if (lead < 0x80) {
            length = 1;
        } else if (lead >= 0xC2 && lead <= 0xDF) {
            length = 2;
        } else if (lead >= 0xE0 && lead <= 0xEF) {
            length = 3;
            if (lead == 0xE0) low = 0xA0;  // overlong
            if (lead == 0xED) high = 0x9F; // surrogates
        } else if (lead >= 0xF0 && lead <= 0xF4) {
            length = 4;
            if (lead == 0xF0) low = 0x90;  // overlong
            if (lead == 0xF4) high = 0x8F; // above U+10FFFF
        } else {
            return false;
        }
        if (text.size() - i < length) return false;
        for (std::size_t k = 1; k < length; ++k) {
            const auto next = static_cast<unsigned char>(text[i + k]);
            if (next < (k == 1 ? low : 0x80) || next > (k == 1 ? high : 0xBF)) return false;
        }
        i += length;
    }
    return true;
}

target_path path_in_dir(const std::string& name, const server_state& state)
{
    if (const char* refusal = unsafe_name(name)) return {{}, refusal};
    // Checked here, not left to the conversion below: on Linux a path is
    // bytes, and it would take any.
    if (!valid_utf8(name)) return {{}, "the name is not valid UTF-8"};
    try {
        // The name is UTF-8; Windows wants UTF-16, which path converts to.
        return {state.dir / fs::path(std::u8string(name.begin(), name.end()))};
    } catch (const std::exception&) {
        return {{}, "the name is not valid UTF-8"};
    }
}

// One upload, from its header packet: checks the name and the size, claims
// the file, says ready, and receives the content.
task<request_end> receive_upload(packet_stream<tcp_socket>& ps, std::span<const std::byte> header_body,
                                 const std::string& peer, server_state& state)
{
    const auto header = file_proto::parse_header(header_body);
    if (!header) {
        co_await reply_and_close(ps, status::protocol_error, 0, no_hash, "malformed file header");
        co_return request_end{false, "protocol error: malformed file header"};
    }
    // Copies: the header's bytes are valid only until the next read_packet.
    const std::string name(header->name);
    const std::string shown = example::escaped(name); // printed: it came from the network
    const std::uint64_t size = header->size;

    const target_path target = path_in_dir(name, state);
    if (target.refusal != nullptr) co_return co_await refuse(ps, peer, shown, status::bad_name, target.refusal, state);
    if (size > state.max_size) {
        const std::string why = "the file is too large: " + std::to_string(size) +
                                " bytes, this server accepts at most " + std::to_string(state.max_size);
        co_return co_await refuse(ps, peer, shown, status::too_large, why, state);
    }
    // The file system decides whether another upload (or program) holds
    // this file, whatever the spelling of its name (file_store.hpp).
    incoming_file file(ps.next_layer().context(), target.path);
    if (auto error = file.claim()) {
        file.discard(); // free whatever it did claim before the client can retry
        co_return co_await refuse(ps, peer, shown, error.busy ? status::busy : status::storage_error, error.message,
                                  state);
    }
    if (auto [ec] = co_await ps.write_packet(file_proto::ready); ec) co_return request_end{false, describe(ec)};
    if (state.log.allow()) {
        std::printf("%s: receiving %s, %llu bytes\n", peer.c_str(), shown.c_str(),
                    static_cast<unsigned long long>(size));
    }
    co_return co_await receive_content(ps, file, peer, shown, size, state);
}

// snippet-begin: download
// One download, from its get packet: checks the name, opens the file for
// reading (shared with other downloads only, so nobody replaces it
// meanwhile), hashes it with overlapped reads, then sends the content packet
// and the file's bytes with one transmit_file. The connection stays in step
// for another request unless the transfer broke off.
task<request_end> send_download(packet_stream<tcp_socket>& ps, std::span<const std::byte> get_body,
                                const std::string& peer, server_state& state)
{
    const std::string name(file_proto::text(get_body)); // a copy, as above
    const std::string shown = example::escaped(name);
    const target_path target = path_in_dir(name, state);
    if (target.refusal != nullptr) co_return co_await refuse(ps, peer, shown, status::bad_name, target.refusal, state);
    random_access_file file(ps.next_layer().context());
    if (auto error = file_store::open_for_download(file, target.path)) {
        const status code = error.missing ? status::not_found : error.busy ? status::busy : status::storage_error;
        co_return co_await refuse(ps, peer, shown, code, error.message, state);
    }
    auto [size_ec, size] = file.size();
    if (size_ec) co_return co_await refuse(ps, peer, shown, status::storage_error, size_ec.message(), state);
    const auto start = std::chrono::steady_clock::now();
    const file_store::stored_content hashed = co_await file_store::hash_file(file, size);
    if (hashed.error) co_return co_await refuse(ps, peer, shown, status::storage_error, hashed.error.message, state);

    // transmit_file's head: a whole content packet, framed as the stream
    // frames its own packets (header, then size and SHA-256).
    std::array<std::byte, 4 + file_proto::content_body_size> head{};
    (void)portico::encode_header(ps.format(), file_proto::content, file_proto::content_body_size, head);
    const auto size_field = file_proto::put_le<8>(size);
    std::copy(size_field.begin(), size_field.end(), head.begin() + 4);
    std::copy(hashed.hash.begin(), hashed.hash.end(), head.begin() + 12);
    if (state.log.allow()) {
        std::printf("%s: sending %s, %llu bytes, sha256 %s\n", peer.c_str(), shown.c_str(),
                    static_cast<unsigned long long>(size), file_hash::hex(hashed.hash).c_str());
    }
    // NOTE: this writes on the socket under the stream, past its send queue.
    // That is sound here because the session awaited every packet it wrote
    // (the queue is empty) and nothing else writes on this connection; the
    // client knows that `size` unframed bytes follow this packet.
    // A call per part, each given --stall-timeout: a client that stops
    // reading would otherwise keep this session, its file and its
    // connection for ever (transmit_file waits for it).
    const portico::transmit_file_options parts{.bytes_per_call = download_part, .call_timeout = state.stall_timeout};
    auto [ec, sent] = co_await ps.next_layer().transmit_file(file, 0, size, portico::buffer(head), {}, parts);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (ec) {
        // The client has part of the file and no way to find the next
        // packet: the connection ends here.
        if (state.log.allow()) {
            std::printf("%s: download of %s failed after %llu of %llu bytes: %s\n", peer.c_str(), shown.c_str(),
                        static_cast<unsigned long long>(sent), static_cast<unsigned long long>(size + head.size()),
                        ec.message().c_str());
        }
        co_return request_end{false, describe(ec)};
    }
    if (state.log.allow()) {
        std::printf("%s: sent %s: %llu bytes in %.2f s (%.1f MiB/s), hashing included, %llu transmit_file calls\n",
                    peer.c_str(), shown.c_str(), static_cast<unsigned long long>(size), seconds,
                    mib_per_second(size, seconds),
                    static_cast<unsigned long long>(size == 0 ? 1 : (size + download_part - 1) / download_part));
    }
    co_return request_end{true, {}};
}
// snippet-end: download

// snippet-begin: session
task<> session(tcp_socket s, endpoint peer, server_state& state)
{
    packet_stream<tcp_socket> ps{std::move(s), portico::packet_stream_options{
                                                   // Several 60 KiB data packets per receive.
                                                   .receive_buffer = 256 * 1024,
                                                   // A packet must arrive whole within 30 s.
                                                   .packet_timeout = 30s,
                                                   // No silence longer than --stall-timeout.
                                                   .idle_timeout = state.stall_timeout,
                                               }};
    io_context& ctx = ps.next_layer().context();
    const std::string who = peer.to_string();
    unsigned stored = 0;
    unsigned sent = 0;
    std::string reason;
    while (reason.empty()) {
        // A request must arrive within --request-timeout of connecting or of
        // the last answer: a connection that asks for nothing is closed.
        auto [ec, pkt] = co_await portico::with_timeout(ctx, state.request_timeout, ps.read_packet());
        if (ec == portico::errc::timed_out) {
            ++state.dropped;
            reason = "sent no request within " + std::to_string(state.request_timeout.count()) + " s";
        } else if (ec == portico::errc::idle_timeout) {
            ++state.dropped;
            reason = "silent for " + std::to_string(state.stall_timeout.count()) + " s";
        } else if (ec) {
            reason = describe(ec);
        } else if (pkt.type == file_proto::file_header) {
            const request_end end = co_await receive_upload(ps, pkt.body, who, state);
            if (end.done) ++stored;
            reason = end.closed;
        } else if (pkt.type == file_proto::get) {
            const request_end end = co_await send_download(ps, pkt.body, who, state);
            if (end.done) ++sent;
            reason = end.closed;
        } else {
            co_await reply_and_close(ps, status::protocol_error, 0, no_hash, "expected a file header or a get");
            reason = "protocol error: expected a file header or a get";
        }
    }
    if (state.log.allow())
        std::printf("%s: closed, %u stored, %u sent (%s)\n", who.c_str(), stored, sent, reason.c_str());
    if (state.finished.fetch_add(1) + 1 == state.session_limit) state.acceptor.close();
}
// snippet-end: session

task<> serve(io_context& ctx, server_state& state)
{
    co_await ctx.schedule();
    portico::task_group sessions;
    for (;;) {
        endpoint peer;
        auto [ec, s] = co_await state.acceptor.accept(peer);
        if (ec) break; // closed: Ctrl+C or the session limit
        if (state.log.allow()) std::printf("%s: connected\n", peer.to_string().c_str());
        sessions.spawn(session(std::move(s), peer, state));
    }
    // On Ctrl+C, stop what the sessions wait for: each read_packet ends with
    // operation_aborted, and an upload in progress deletes its NAME.part.
    if (ctx.get_stop_token().stop_requested()) sessions.request_stop();
    co_await sessions.join();
}

// Ctrl+C, Ctrl+Break or closing the console window stops the context (the
// wait resumes on a pool thread). If the server stops for another reason
// (the session limit), stop() ends the wait with operation_aborted instead.
task<> stop_on_signal(io_context& ctx, portico::signal_set& signals)
{
    auto [ec, event] = co_await signals.wait();
    if (!ec) ctx.stop();
}

constexpr const char* usage =
    "usage: file_server [--host ADDRESS] [--port N] [--dir DIRECTORY] [--threads N] [--sessions N]\n"
    "                   [--max-size BYTES] [--request-timeout SECONDS] [--stall-timeout SECONDS]\n"
    "  --host             address to listen on (default 0.0.0.0: every interface)\n"
    "  --port             port to listen on (default 25000; 0 lets the system choose)\n"
    "  --dir              where uploads are stored and downloads come from (default: the\n"
    "                     current directory)\n"
    "  --threads          pool threads (default 2)\n"
    "  --sessions         exit after this many clients have come and gone (default 0: never)\n"
    "  --max-size         the largest file accepted (default 4294967296: 4 GiB)\n"
    "  --request-timeout  a request must arrive within this after connecting or after the\n"
    "                     previous answer (default 10)\n"
    "  --stall-timeout    during an upload, the longest the client may send nothing; during a\n"
    "                     download, the longest it may take to read a 4 MiB part (default 30)\n"
    "Receives files from file_client: NAME.part while it arrives, read back and renamed to NAME\n"
    "once its size and SHA-256 match; sends files with transmit_file, a call per 4 MiB. No pool thread\n"
    "waits for the disk. Ctrl+C ends every session and exits.\n";

} // namespace

int main(int argc, char** argv)
{
    // Unbuffered, so whoever reads the output (a terminal, a test script)
    // sees each line when it is printed, even if the process is killed
    // later. The Windows C runtimes have no line buffering: _IOLBF means full
    // buffering there, and the UCRT rejects a size below 2 as an invalid
    // parameter (docs/platform-notes.md). A flush after each line would do
    // too, at every printf; these programs print little, so unbuffered it is.
    std::setvbuf(stdout, nullptr, _IONBF, 0);
    for (int i = 1; i < argc; ++i) {
        if (std::string_view(argv[i]) == "--help" || std::string_view(argv[i]) == "-h") {
            std::fputs(usage, stdout);
            return 0;
        }
    }
    const auto host = portico::address::parse(example::option(argc, argv, "--host", "0.0.0.0"));
    if (host.error()) {
        std::fprintf(stderr, "file_server: --host wants a numeric IPv4 or IPv6 address\n");
        return 2;
    }
    const auto port = static_cast<unsigned short>(std::atoi(example::option(argc, argv, "--port", "25000")));
    const auto threads = static_cast<unsigned>(std::atoi(example::option(argc, argv, "--threads", "2")));
    const auto limit = static_cast<unsigned>(std::atoi(example::option(argc, argv, "--sessions", "0")));
    const std::uint64_t max_size = std::strtoull(example::option(argc, argv, "--max-size", "4294967296"), nullptr, 10);
    const std::chrono::seconds request_timeout(std::atoi(example::option(argc, argv, "--request-timeout", "10")));
    const std::chrono::seconds stall_timeout(std::atoi(example::option(argc, argv, "--stall-timeout", "30")));
    if (request_timeout.count() < 1 || stall_timeout.count() < 1) {
        std::fprintf(stderr, "file_server: --request-timeout and --stall-timeout want at least 1 second\n");
        return 2;
    }
    const fs::path dir = example::option(argc, argv, "--dir", ".");
    if (std::error_code ec; !fs::is_directory(dir, ec)) {
        std::fprintf(stderr, "file_server: --dir %s is not a directory\n", dir.string().c_str());
        return 2;
    }

    io_context ctx;
    tcp_acceptor acceptor(ctx);
    if (auto [ec] = acceptor.listen(endpoint{host.value_unchecked(), port}); ec) {
        std::fprintf(stderr, "file_server: cannot listen on port %u: %s\n", port, ec.message().c_str());
        return 1;
    }
    std::printf("listening on %s\n", acceptor.local_endpoint().value().to_string().c_str());

    using portico::signal_event;
    portico::signal_set signals(ctx, {signal_event::interrupt, signal_event::quit, signal_event::hangup});
    ctx.spawn(stop_on_signal(ctx, signals));
    server_state state{acceptor, dir, limit, max_size, request_timeout, stall_timeout};
    {
        portico::thread_pool pool(ctx, threads == 0 ? 1 : threads);
        portico::sync_wait(serve(ctx, state));
        ctx.stop();
    }
    state.log.flush();
    if (state.dropped != 0) std::printf("%u connections closed by a deadline\n", state.dropped.load());
    // Connections reset (or refused by the system) before they were accepted:
    // never sessions, but worth knowing when a client says it was cut off.
    if (const auto failed = acceptor.failed_accepts(); failed != 0)
        std::printf("%llu connections failed before they were accepted\n", static_cast<unsigned long long>(failed));
    std::printf("served %u sessions\n", state.finished.load());
    return 0;
}
