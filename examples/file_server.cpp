// portico example: the file server. Receives uploads from file_client and
// stores them in a directory: the file transfer of the course notes, with a
// protocol (file_protocol.hpp): a header with the name and size, the content
// in data packets, and a CRC-32 at the end that both sides compare.
//
// An upload is written to NAME.part while it arrives. At the end the server
// reads NAME.part back, and only if its size and CRC-32 are what the client
// announced does it replace NAME with it. Whatever else ends the upload (a
// reset, a client that closes early, a wrong checksum, a deadline, Ctrl+C)
// deletes NAME.part: NAME is never a truncated or mixed file, and an older
// NAME stays as it was. Two uploads of one file (the same name, or names
// the file system takes for one, such as "Report.bin" and "report.bin") are
// never received at once: the second is refused as busy (file_store.hpp).
//
//   file_server [--host ADDRESS] [--port N] [--dir DIRECTORY] [--threads N] [--sessions N]
//               [--max-size BYTES] [--request-timeout SECONDS] [--stall-timeout SECONDS]
//
//   --host             address to listen on (default 0.0.0.0: every interface)
//   --port             port to listen on (default 25000; 0 lets the system choose)
//   --dir              where uploads are stored (default: the current directory)
//   --threads          pool threads (default 2)
//   --sessions         exit after this many clients have come and gone (default 0: never)
//   --max-size         the largest file accepted (default 4 GiB); larger ones are refused
//   --request-timeout  a file header must arrive within this after connecting or after
//                      the previous upload's result (default 10)
//   --stall-timeout    during an upload, the longest the client may send nothing (default 30)
//
// The first line printed is "listening on HOST:PORT". Clients are served
// concurrently. Names from the network are printed escaped, and the lines
// about connections and uploads are at most 50 per 10 s (log_limiter.hpp).
// Ctrl+C ends every session (an upload in progress is discarded) and exits.

#include <portico/portico.hpp>

#include "example_support.hpp"
#include "log_limiter.hpp"
#include "untrusted_text.hpp"

#include "file_protocol.hpp"
#include "file_store.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
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
using portico::task;
using portico::tcp_acceptor;
using portico::tcp_socket;

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

task<std::error_code> reply(packet_stream<tcp_socket>& ps, status code, std::uint64_t bytes, std::uint32_t crc,
                            std::string_view message)
{
    const auto fixed = file_proto::result_prefix(code, bytes, crc);
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
task<> reply_and_close(packet_stream<tcp_socket>& ps, status code, std::uint64_t bytes, std::uint32_t crc,
                       std::string_view message)
{
    if (auto ec = co_await reply(ps, code, bytes, crc, message); ec) co_return;
    (void)ps.next_layer().shutdown_send();
    (void)co_await portico::with_timeout(ps.next_layer().context(), 5s, discard_until_closed(ps));
}

// How an upload ended: whether the file was stored, and why the connection
// cannot carry another upload (empty: it can).
struct upload_end {
    bool stored = false;
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
task<upload_end> receive_content(packet_stream<tcp_socket>& ps, incoming_file& file, const std::string& peer,
                                 const std::string& name, std::uint64_t size, server_state& state)
{
    const auto start = std::chrono::steady_clock::now();
    file_proto::crc32 crc;
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
                (void)co_await reply(ps, status::size_mismatch, received, crc.value(),
                                     "the connection ended before the end of the file");
            }
            co_return upload_end{false, describe(ec)};
        }
        if (pkt.type == file_proto::data) {
            if (pkt.body.size() > size - received) {
                failed("more data than announced");
                co_await reply_and_close(ps, status::size_mismatch, received, crc.value(), "more data than announced");
                co_return upload_end{false, "protocol error: more data than announced"};
            }
            // Written straight from the receive buffer: no copy.
            if (auto error = file.write(pkt.body)) {
                failed(error.message);
                co_await reply_and_close(ps, status::storage_error, received, crc.value(), error.message);
                co_return upload_end{false, error.message};
            }
            crc.update(pkt.body);
            received += pkt.body.size();
            continue;
        }
        if (pkt.type != file_proto::end || pkt.body.size() != 4) {
            failed("unexpected packet");
            co_await reply_and_close(ps, status::protocol_error, received, crc.value(), "expected data or end");
            co_return upload_end{false, "protocol error: expected data or end"};
        }
        // The end packet: the connection is in step for another upload,
        // whatever the verdict. The verdict is on what the disk holds: what
        // was received must match the sender's CRC-32, and so must the file
        // read back, before it replaces NAME.
        const auto theirs = static_cast<std::uint32_t>(file_proto::get_le(pkt.body));
        status verdict = status::stored;
        std::string why;
        file_store::stored_content stored;
        if (received != size) {
            verdict = status::size_mismatch;
            why = "the content ended before the announced size";
        } else if (crc.value() != theirs) {
            verdict = status::checksum_mismatch;
            char text[96];
            std::snprintf(text, sizeof text, "crc32 %08x received, the sender computed %08x", crc.value(), theirs);
            why = text;
        } else if (stored = file.read_back(); stored.error) {
            verdict = status::storage_error;
            why = stored.error.message;
        } else if (stored.size != size || stored.crc != theirs) {
            verdict = status::storage_error;
            char text[128];
            std::snprintf(text, sizeof text, "the stored file is not what was received: %llu bytes, crc32 %08x",
                          static_cast<unsigned long long>(stored.size), stored.crc);
            why = text;
        } else if (auto error = file.commit()) {
            verdict = status::storage_error;
            why = error.message;
        }
        if (verdict != status::stored) {
            failed(why);
            co_return upload_end{false, describe(co_await reply(ps, verdict, received, crc.value(), why))};
        }
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        if (state.log.allow()) {
            std::printf("%s: stored %s: %llu bytes in %.2f s (%.1f MiB/s), crc32 %08x matched, read back\n",
                        peer.c_str(), name.c_str(), static_cast<unsigned long long>(stored.size), seconds,
                        mib_per_second(stored.size, seconds), stored.crc);
        }
        co_return upload_end{true, describe(co_await reply(ps, status::stored, stored.size, stored.crc, "stored"))};
    }
}
// snippet-end: content

// Refuses an upload before its content: says why, and keeps the connection
// for another upload.
task<upload_end> refuse(packet_stream<tcp_socket>& ps, const std::string& peer, const std::string& shown, status code,
                        const std::string& why, server_state& state)
{
    if (state.log.allow()) std::printf("%s: refused \"%s\": %s\n", peer.c_str(), shown.c_str(), why.c_str());
    co_return upload_end{false, describe(co_await reply(ps, code, 0, 0, why))};
}

// One upload, from its header packet: checks the name and the size, claims
// the file, says ready, and receives the content.
task<upload_end> receive_upload(packet_stream<tcp_socket>& ps, std::span<const std::byte> header_body,
                                const std::string& peer, server_state& state)
{
    const auto header = file_proto::parse_header(header_body);
    if (!header) {
        co_await reply_and_close(ps, status::protocol_error, 0, 0, "malformed file header");
        co_return upload_end{false, "protocol error: malformed file header"};
    }
    // Copies: the header's bytes are valid only until the next read_packet.
    const std::string name(header->name);
    const std::string shown = example::escaped(name); // printed: it came from the network
    const std::uint64_t size = header->size;

    const char* refusal = unsafe_name(name);
    fs::path target;
    if (refusal == nullptr) {
        try {
            // The name is UTF-8; Windows wants UTF-16, which path converts to.
            target = state.dir / fs::path(std::u8string(name.begin(), name.end()));
        } catch (const std::exception&) {
            refusal = "the name is not valid UTF-8";
        }
    }
    if (refusal != nullptr) co_return co_await refuse(ps, peer, shown, status::bad_name, refusal, state);
    if (size > state.max_size) {
        const std::string why = "the file is too large: " + std::to_string(size) +
                                " bytes, this server accepts at most " + std::to_string(state.max_size);
        co_return co_await refuse(ps, peer, shown, status::too_large, why, state);
    }
    // The file system decides whether another upload (or program) holds
    // this file, whatever the spelling of its name (file_store.hpp).
    incoming_file file(target);
    if (auto error = file.claim()) {
        file.discard(); // free whatever it did claim before the client can retry
        co_return co_await refuse(ps, peer, shown, error.busy ? status::busy : status::storage_error, error.message,
                                  state);
    }
    if (auto [ec] = co_await ps.write_packet(file_proto::ready); ec) co_return upload_end{false, describe(ec)};
    if (state.log.allow()) {
        std::printf("%s: receiving %s, %llu bytes\n", peer.c_str(), shown.c_str(),
                    static_cast<unsigned long long>(size));
    }
    co_return co_await receive_content(ps, file, peer, shown, size, state);
}

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
    std::string reason;
    while (reason.empty()) {
        // A request must arrive within --request-timeout of connecting or of
        // the last result: a connection that asks for nothing is closed.
        auto [ec, pkt] = co_await portico::with_timeout(ctx, state.request_timeout, ps.read_packet());
        if (ec == portico::errc::timed_out) {
            ++state.dropped;
            reason = "sent no request within " + std::to_string(state.request_timeout.count()) + " s";
        } else if (ec == portico::errc::idle_timeout) {
            ++state.dropped;
            reason = "silent for " + std::to_string(state.stall_timeout.count()) + " s";
        } else if (ec) {
            reason = describe(ec);
        } else if (pkt.type != file_proto::file_header) {
            co_await reply_and_close(ps, status::protocol_error, 0, 0, "expected a file header");
            reason = "protocol error: expected a file header";
        } else {
            const upload_end end = co_await receive_upload(ps, pkt.body, who, state);
            if (end.stored) ++stored;
            reason = end.closed;
        }
    }
    if (state.log.allow()) std::printf("%s: closed, %u stored (%s)\n", who.c_str(), stored, reason.c_str());
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
    "  --dir              where uploads are stored (default: the current directory)\n"
    "  --threads          pool threads (default 2)\n"
    "  --sessions         exit after this many clients have come and gone (default 0: never)\n"
    "  --max-size         the largest file accepted (default 4294967296: 4 GiB)\n"
    "  --request-timeout  a file header must arrive within this after connecting or after the\n"
    "                     previous upload's result (default 10)\n"
    "  --stall-timeout    during an upload, the longest the client may send nothing (default 30)\n"
    "Receives files from file_client: NAME.part while it arrives, read back and renamed to NAME\n"
    "once its size and CRC-32 match. Ctrl+C ends every session and exits.\n";

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
    std::printf("served %u sessions\n", state.finished.load());
    return 0;
}
