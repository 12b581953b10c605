// portico example: the file server. Receives uploads from file_client and
// stores them in a directory: the file transfer of the course notes, with a
// protocol (file_protocol.hpp): a header with the name and size, the content
// in data packets, and a CRC-32 at the end that both sides compare.
//
// An upload is written to NAME.part while it arrives and renamed to NAME only
// once its size and CRC-32 match what the client announced. Whatever else
// ends it (a reset, a client that closes early, a wrong checksum, Ctrl+C)
// deletes NAME.part: NAME is never a truncated file, and an older NAME stays
// as it was.
//
//   file_server [--host ADDRESS] [--port N] [--dir DIRECTORY] [--threads N] [--sessions N]
//
//   --host      address to listen on (default 0.0.0.0: every interface)
//   --port      port to listen on (default 25000; 0 lets the system choose)
//   --dir       where uploads are stored (default: the current directory)
//   --threads   pool threads (default 2)
//   --sessions  exit after this many clients have come and gone (default 0: never)
//
// The first line printed is "listening on HOST:PORT". Clients are served
// concurrently. Ctrl+C ends every session (an upload in progress is
// discarded) and exits.

#include <portico/portico.hpp>

#include "example_support.hpp"

#include "file_protocol.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using file_proto::status;
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
    std::atomic<unsigned> finished{0};
    // Names being received, in lower case (Windows names ignore case): two
    // uploads of one name at once would write the same NAME.part.
    std::mutex mutex{};
    std::set<std::string> receiving{};
};

std::string lower(std::string_view s)
{
    std::string out(s);
    for (char& c : out) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    return out;
}

// Bytes from the network, shown with control characters as '?' and cut at
// 100: a name must not drive the terminal or flood the log.
std::string printable(std::string_view s)
{
    std::string out(s.substr(0, 100));
    for (char& c : out) {
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) c = '?';
    }
    return s.size() > 100 ? out + "..." : out;
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
    // Devices in every directory, with any extension: "con.txt" is the console.
    static constexpr std::array<std::string_view, 22> devices{
        "con",  "prn",  "aux",  "nul",  "com1", "com2", "com3", "com4", "com5", "com6", "com7",
        "com8", "com9", "lpt1", "lpt2", "lpt3", "lpt4", "lpt5", "lpt6", "lpt7", "lpt8", "lpt9"};
    const std::string stem = lower(name.substr(0, name.find('.')));
    if (std::find(devices.begin(), devices.end(), stem) != devices.end()) return "the name is a Windows device name";
    if (lower(name).ends_with(".part")) return "names ending in .part are reserved for uploads in progress";
    return nullptr;
}
// snippet-end: names

// Holds a name in server_state::receiving for the duration of one upload.
class name_claim {
public:
    name_claim(server_state& state, std::string_view name) : state_(state), key_(lower(name))
    {
        std::lock_guard lock(state_.mutex);
        claimed_ = state_.receiving.insert(key_).second;
    }
    name_claim(const name_claim&) = delete;
    name_claim& operator=(const name_claim&) = delete;
    ~name_claim()
    {
        if (!claimed_) return;
        std::lock_guard lock(state_.mutex);
        state_.receiving.erase(key_);
    }
    explicit operator bool() const noexcept { return claimed_; }

private:
    server_state& state_;
    std::string key_;
    bool claimed_ = false;
};

// The text of the error the C runtime just reported (errno is per thread).
std::string system_message(const char* what)
{
    const int error = errno;
    return std::string(what) + ": " + (error != 0 ? std::generic_category().message(error) : "I/O error");
}

// snippet-begin: partial_file
// The file being received: NAME.part until commit() renames it to NAME.
// However the upload ends before that, the destructor deletes NAME.part.
class partial_file {
public:
    explicit partial_file(fs::path target) : target_(std::move(target)), part_(target_)
    {
        part_ += ".part";
        out_.open(part_, std::ios::binary | std::ios::trunc);
    }
    partial_file(const partial_file&) = delete;
    partial_file& operator=(const partial_file&) = delete;
    ~partial_file()
    {
        if (committed_) return;
        out_.close();
        std::error_code ignored;
        fs::remove(part_, ignored);
    }

    [[nodiscard]] bool is_open() const { return out_.is_open(); }

    bool write(std::span<const std::byte> bytes)
    {
        out_.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
        return static_cast<bool>(out_);
    }

    // Closes NAME.part (a failed flush is a failed upload) and renames it to
    // NAME, replacing an older NAME in one step. Returns why it failed, or
    // nothing.
    std::string commit()
    {
        out_.close();
        if (!out_) return system_message("cannot write the file");
        std::error_code ec;
        fs::rename(part_, target_, ec);
        if (ec) return "cannot rename the file: " + ec.message();
        committed_ = true;
        return {};
    }

private:
    fs::path target_;
    fs::path part_;
    std::ofstream out_;
    bool committed_ = false;
};
// snippet-end: partial_file

double mib_per_second(std::uint64_t bytes, double seconds)
{
    return seconds > 0 ? static_cast<double>(bytes) / (1024.0 * 1024.0) / seconds : 0.0;
}

task<std::error_code> reply(packet_stream<tcp_socket>& ps, status code, std::uint64_t received, std::uint32_t crc,
                            std::string_view message)
{
    const auto fixed = file_proto::result_prefix(code, received, crc);
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
task<> reply_and_close(packet_stream<tcp_socket>& ps, status code, std::uint64_t received, std::uint32_t crc,
                       std::string_view message)
{
    if (auto ec = co_await reply(ps, code, received, crc, message); ec) co_return;
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
// `file` is NAME.part, which its owner deletes unless commit() succeeded.
task<upload_end> receive_content(packet_stream<tcp_socket>& ps, partial_file& file, const std::string& peer,
                                 const std::string& name, std::uint64_t size)
{
    const auto start = std::chrono::steady_clock::now();
    file_proto::crc32 crc;
    std::uint64_t received = 0;
    auto failed = [&](const std::string& why) {
        std::printf("%s: upload of %s failed after %llu of %llu bytes: %s\n", peer.c_str(), name.c_str(),
                    static_cast<unsigned long long>(received), static_cast<unsigned long long>(size), why.c_str());
    };
    for (;;) {
        auto [ec, pkt] = co_await ps.read_packet();
        if (ec) {
            // Reset, closed early, timed out, Ctrl+C.
            failed(ec == portico::errc::eof ? "the client closed the connection early (end of stream)" : ec.message());
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
            if (!file.write(pkt.body)) {
                const std::string why = system_message("cannot write the file");
                failed(why);
                co_await reply_and_close(ps, status::storage_error, received, crc.value(), why);
                co_return upload_end{false, why};
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
        // whatever the verdict.
        const auto theirs = static_cast<std::uint32_t>(file_proto::get_le(pkt.body));
        status verdict = status::stored;
        std::string why;
        if (received != size) {
            verdict = status::size_mismatch;
            why = "the content ended before the announced size";
        } else if (crc.value() != theirs) {
            verdict = status::checksum_mismatch;
            char text[96];
            std::snprintf(text, sizeof text, "crc32 %08x received, the sender computed %08x", crc.value(), theirs);
            why = text;
        } else if (why = file.commit(); !why.empty()) {
            verdict = status::storage_error;
        }
        if (verdict != status::stored) {
            failed(why);
            co_return upload_end{false, describe(co_await reply(ps, verdict, received, crc.value(), why))};
        }
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::printf("%s: stored %s: %llu bytes in %.2f s (%.1f MiB/s), crc32 %08x matched\n", peer.c_str(),
                    name.c_str(), static_cast<unsigned long long>(received), seconds, mib_per_second(received, seconds),
                    crc.value());
        co_return upload_end{true, describe(co_await reply(ps, status::stored, received, crc.value(), "stored"))};
    }
}
// snippet-end: content

// One upload, from its header packet: checks the name, claims it, creates
// NAME.part, says ready, and receives the content.
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
    const std::string shown = printable(name);
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
    if (refusal != nullptr) {
        std::printf("%s: refused \"%s\": %s\n", peer.c_str(), shown.c_str(), refusal);
        co_return upload_end{false, describe(co_await reply(ps, status::bad_name, 0, 0, refusal))};
    }
    name_claim claim(state, name);
    if (!claim) {
        std::printf("%s: refused \"%s\": an upload of that name is in progress\n", peer.c_str(), shown.c_str());
        co_return upload_end{false,
                             describe(co_await reply(ps, status::busy, 0, 0, "an upload of that name is in progress"))};
    }
    partial_file file(target);
    if (!file.is_open()) {
        const std::string why = system_message("cannot create the file");
        std::printf("%s: refused \"%s\": %s\n", peer.c_str(), shown.c_str(), why.c_str());
        co_return upload_end{false, describe(co_await reply(ps, status::storage_error, 0, 0, why))};
    }
    if (auto [ec] = co_await ps.write_packet(file_proto::ready); ec) co_return upload_end{false, describe(ec)};
    std::printf("%s: receiving %s, %llu bytes\n", peer.c_str(), shown.c_str(), static_cast<unsigned long long>(size));
    co_return co_await receive_content(ps, file, peer, shown, size);
}

task<> session(tcp_socket s, endpoint peer, server_state& state)
{
    packet_stream<tcp_socket> ps{std::move(s), portico::packet_stream_options{
                                                   // Several 60 KiB data packets per receive.
                                                   .receive_buffer = 256 * 1024,
                                                   .packet_timeout = 30s,
                                                   .idle_timeout = 2min,
                                               }};
    const std::string who = peer.to_string();
    unsigned stored = 0;
    std::string reason;
    while (reason.empty()) {
        auto [ec, pkt] = co_await ps.read_packet();
        if (ec) {
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
    std::printf("%s: closed, %u stored (%s)\n", who.c_str(), stored, reason.c_str());
    if (state.finished.fetch_add(1) + 1 == state.session_limit) state.acceptor.close();
}

task<> serve(io_context& ctx, server_state& state)
{
    co_await ctx.schedule();
    portico::task_group sessions;
    for (;;) {
        endpoint peer;
        auto [ec, s] = co_await state.acceptor.accept(peer);
        if (ec) break; // closed: Ctrl+C or the session limit
        std::printf("%s: connected\n", peer.to_string().c_str());
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

constexpr const char* usage = "usage: file_server [--host ADDRESS] [--port N] [--dir DIRECTORY] [--threads N] "
                              "[--sessions N]\n"
                              "  --host      address to listen on (default 0.0.0.0: every interface)\n"
                              "  --port      port to listen on (default 25000; 0 lets the system choose)\n"
                              "  --dir       where uploads are stored (default: the current directory)\n"
                              "  --threads   pool threads (default 2)\n"
                              "  --sessions  exit after this many clients have come and gone (default 0: never)\n"
                              "Receives files from file_client: NAME.part while it arrives, renamed to NAME\n"
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
    server_state state{acceptor, dir, limit};
    {
        portico::thread_pool pool(ctx, threads == 0 ? 1 : threads);
        portico::sync_wait(serve(ctx, state));
        ctx.stop();
    }
    std::printf("served %u sessions\n", state.finished.load());
    return 0;
}
