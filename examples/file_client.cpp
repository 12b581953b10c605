// portico example: the file client. Uploads a file to file_server with the
// protocol of file_protocol.hpp and exits 0 only if the server stored it with
// the announced size and a matching CRC-32.
//
//   file_client [--host ADDRESS] [--port N] [--as NAME] FILE
//
//   --host  server address or name (default 127.0.0.1)
//   --port  server port (default 25000)
//   --as    the name to store the file under (default: FILE without its directories)
//
// Test aids, which make the upload fail on purpose so that the server's error
// path can be exercised:
//
//   --abort-after BYTES  reset the connection (RST) once BYTES of the content were sent
//   --close-after BYTES  close the connection normally (FIN) once BYTES were sent,
//                        without the end packet
//
// The content goes out in 60 KiB data packets, several queued at once while
// the next is read from disk; the file is never read into memory whole.
// "Stored" counts only if the server reports the size and CRC-32 of the file
// it read back from its disk equal to ours. Exit status: 0 stored, 1 the
// upload failed, 2 bad arguments or an unreadable FILE.

#include <portico/portico.hpp>

#include "file_protocol.hpp"
#include "untrusted_text.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace {

namespace fs = std::filesystem;
using file_proto::status;
using portico::io_context;
using portico::packet_stream;
using portico::task;
using portico::tcp_socket;

constexpr std::uint64_t never = std::numeric_limits<std::uint64_t>::max();

struct settings {
    std::string host = "127.0.0.1";
    std::string port = "25000";
    std::string file;
    std::string name; // empty: FILE's own name
    std::uint64_t abort_after = never;
    std::uint64_t close_after = never;
};

// snippet-begin: send
// Chunks queued on the stream at once. Each needs its own buffer, since
// write_packet sends the body where it lies until the kernel has taken it.
constexpr std::size_t window = 8;

// One chunk's buffer. Its write runs in `writing`: joining that group waits
// until the chunk was handed to the kernel, and the buffer is free again.
struct slot {
    std::vector<std::byte> data = std::vector<std::byte>(file_proto::max_chunk);
    portico::task_group writing;
    std::error_code error;
};

task<> write_chunk(packet_stream<tcp_socket>& ps, std::span<const std::byte> chunk, std::error_code& error,
                   std::atomic<std::uint64_t>& sent)
{
    auto [ec] = co_await ps.write_packet(file_proto::data, chunk);
    error = ec;
    if (!ec) sent += chunk.size();
}

// Streams `size` bytes of `in` as data packets, then the end packet with
// their CRC-32, also left in `checksum` (the test aids set `stop_after`: the
// data stops once that much was queued, and no end packet is sent). Reading and sending
// overlap: up to `window` chunks wait in the stream's send queue while the
// next is read. When the server reads more slowly, TCP's flow control makes
// the kernel take the chunks more slowly, their writes complete later, and
// this loop waits for a free buffer: the sender never runs ahead by more
// than the window.
task<std::error_code> send_content(packet_stream<tcp_socket>& ps, std::ifstream& in, std::uint64_t size,
                                   std::uint64_t stop_after, std::atomic<std::uint64_t>& sent, std::uint32_t& checksum)
{
    std::array<slot, window> slots;
    file_proto::crc32 crc;
    std::uint64_t queued = 0;
    std::error_code error;
    for (std::size_t i = 0; queued < size && queued < stop_after; ++i) {
        slot& s = slots[i % window];
        co_await s.writing.join(); // its previous chunk is with the kernel
        if (s.error) {
            error = s.error;
            break;
        }
        const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(file_proto::max_chunk, size - queued));
        if (!in.read(reinterpret_cast<char*>(s.data.data()), static_cast<std::streamsize>(n))) {
            error = std::make_error_code(std::errc::io_error); // shrunk, or unreadable, while being sent
            break;
        }
        const std::span<const std::byte> chunk(s.data.data(), n);
        crc.update(chunk);
        queued += n;
        // Starts the write now (packets queue in the order they are started)
        // without waiting for it.
        s.writing.spawn(write_chunk(ps, chunk, s.error, sent));
    }
    for (slot& s : slots) {
        co_await s.writing.join();
        if (!error) error = s.error;
    }
    if (error || queued != size || stop_after != never) co_return error;
    checksum = crc.value();
    auto [ec] = co_await ps.write_packet(file_proto::end, file_proto::put_le<4>(checksum));
    co_return ec;
}
// snippet-end: send

double mib_per_second(std::uint64_t bytes, double seconds)
{
    return seconds > 0 ? static_cast<double>(bytes) / (1024.0 * 1024.0) / seconds : 0.0;
}

task<int> upload(io_context& ctx, settings cfg)
{
    co_await ctx.schedule();
    std::error_code size_ec;
    const fs::path path(cfg.file);
    const std::uint64_t size = fs::file_size(path, size_ec);
    std::ifstream in(path, std::ios::binary);
    if (size_ec || !in) {
        std::fprintf(stderr, "file_client: cannot read %s: %s\n", cfg.file.c_str(),
                     size_ec ? size_ec.message().c_str() : "cannot open it");
        co_return 2;
    }
    if (cfg.name.empty()) {
        const std::u8string own = path.filename().u8string();
        cfg.name.assign(own.begin(), own.end());
    }

    tcp_socket s(ctx);
    auto [connect_ec, server] = co_await s.connect(cfg.host, cfg.port);
    if (connect_ec) {
        std::printf("file_client: cannot connect to %s port %s: %s\n", cfg.host.c_str(), cfg.port.c_str(),
                    connect_ec.message().c_str());
        co_return 1;
    }
    packet_stream<tcp_socket> ps(std::move(s));
    std::printf("uploading %s as %s, %llu bytes, to %s\n", cfg.file.c_str(), cfg.name.c_str(),
                static_cast<unsigned long long>(size), server.to_string().c_str());

    // The header, gathered from two pieces into one packet: size, then name.
    if (auto [ec] = co_await ps.write_packet(file_proto::file_header, file_proto::put_le<8>(size), cfg.name); ec) {
        std::printf("file_client: sending the header: %s\n", ec.message().c_str());
        co_return 1;
    }
    // The server checks the name before a byte of content is sent.
    auto [ready_ec, ready] = co_await ps.read_packet();
    if (ready_ec) {
        std::printf("file_client: waiting for the server: %s\n", ready_ec.message().c_str());
        co_return 1;
    }
    if (ready.type == file_proto::result) {
        const auto refusal = file_proto::parse_result(ready.body);
        // The server's words are printed escaped: they must not drive the terminal.
        std::printf("file_client: the server refused %s: %s\n", cfg.name.c_str(),
                    refusal ? example::escaped(refusal->message).c_str() : "(malformed answer)");
        co_return 1;
    }
    if (ready.type != file_proto::ready) {
        std::printf("file_client: unexpected answer from the server (type %u)\n", static_cast<unsigned>(ready.type));
        co_return 1;
    }

    const auto start = std::chrono::steady_clock::now();
    const std::uint64_t limit = std::min(cfg.abort_after, cfg.close_after);
    std::atomic<std::uint64_t> sent{0};
    std::uint32_t checksum = 0;
    std::error_code send_error;
    std::error_code answer_error;
    std::optional<file_proto::result_fields> answer;
    double seconds = 0;

    // snippet-begin: upload
    // Sending and listening at once: the server answers once, either after
    // the end packet (stored, or why not) or as soon as it gives up (a write
    // error on its side). Either way nothing more is worth sending, so the
    // listener closes the stream, which stops a sender still going.
    auto sender = [&]() -> task<> {
        send_error = co_await send_content(ps, in, size, limit, sent, checksum);
        if (cfg.abort_after != never) {
            // Linger 0: closing the socket resets the connection (RST).
            (void)ps.next_layer().set_linger(true, 0);
            ps.close();
        } else if (cfg.close_after != never) {
            (void)ps.next_layer().shutdown_send(); // FIN, without the end packet
        } else if (send_error) {
            ps.close();
        }
    };
    auto listener = [&]() -> task<> {
        auto [ec, pkt] = co_await ps.read_packet();
        seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        if (ec) {
            answer_error = ec;
        } else if (pkt.type == file_proto::result) {
            answer = file_proto::parse_result(pkt.body);
        }
        if (!ec && !answer) answer_error = std::make_error_code(std::errc::protocol_error);
        ps.close();
    };
    co_await portico::when_all(sender(), listener());
    // snippet-end: upload

    const unsigned long long done = sent.load();
    const auto total = static_cast<unsigned long long>(size);
    if (limit != never) {
        std::printf("file_client: stopped after %llu of %llu bytes on purpose (%s, a test aid)\n", done, total,
                    cfg.abort_after != never ? "--abort-after: connection reset" : "--close-after: connection closed");
        if (answer) std::printf("file_client: the server says: %s\n", example::escaped(answer->message).c_str());
        co_return 1;
    }
    if (answer && answer->code == status::stored && (answer->bytes != size || answer->crc != checksum)) {
        std::printf("file_client: the server says it stored %s, but its copy has %llu bytes and crc32 %08x, "
                    "where ours has %llu and %08x\n",
                    cfg.name.c_str(), static_cast<unsigned long long>(answer->bytes), answer->crc, total, checksum);
        co_return 1;
    }
    if (answer && answer->code == status::stored) {
        std::printf("sent %s: %llu bytes in %.2f s (%.1f MiB/s), crc32 %08x; stored by the server, checksum matched\n",
                    cfg.name.c_str(), done, seconds, mib_per_second(done, seconds), answer->crc);
        co_return 0;
    }
    std::string why = answer ? "the server says: " + example::escaped(answer->message)
                      : send_error && send_error != portico::errc::operation_aborted ? send_error.message()
                                                                                     : answer_error.message();
    if (send_error == std::errc::io_error) why = "cannot read " + cfg.file + " (did it change while being sent?)";
    std::printf("file_client: upload of %s failed after %llu of %llu bytes: %s\n", cfg.name.c_str(), done, total,
                why.c_str());
    co_return 1;
}

constexpr const char* usage =
    "usage: file_client [--host ADDRESS] [--port N] [--as NAME] FILE\n"
    "  --host  server address or name (default 127.0.0.1)\n"
    "  --port  server port (default 25000)\n"
    "  --as    the name to store the file under (default: FILE without its directories)\n"
    "Test aids, which make the upload fail on purpose to exercise the server's error path:\n"
    "  --abort-after BYTES  reset the connection (RST) once BYTES of the content were sent\n"
    "  --close-after BYTES  close the connection normally (FIN) once BYTES were sent, without the end packet\n"
    "Exit status: 0 stored, 1 the upload failed, 2 bad arguments or an unreadable FILE.\n";

std::optional<settings> parse(int argc, char** argv)
{
    settings cfg;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "--help" || arg == "-h") {
            std::fputs(usage, stdout);
            std::exit(0);
        }
        if (!arg.starts_with("--")) {
            if (!cfg.file.empty()) return std::nullopt; // one FILE per run
            cfg.file = arg;
            continue;
        }
        if (i + 1 == argc) return std::nullopt;
        const char* value = argv[++i];
        if (arg == "--host") {
            cfg.host = value;
        } else if (arg == "--port") {
            cfg.port = value;
        } else if (arg == "--as") {
            cfg.name = value;
        } else if (arg == "--abort-after") {
            cfg.abort_after = std::strtoull(value, nullptr, 10);
        } else if (arg == "--close-after") {
            cfg.close_after = std::strtoull(value, nullptr, 10);
        } else {
            return std::nullopt;
        }
    }
    if (cfg.file.empty()) return std::nullopt;
    return cfg;
}

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
    const auto cfg = parse(argc, argv);
    if (!cfg) {
        std::fputs(usage, stderr);
        return 2;
    }
    io_context ctx;
    int result = 1;
    {
        portico::thread_pool pool(ctx, 2);
        result = portico::sync_wait(upload(ctx, *cfg));
        ctx.stop();
    }
    return result;
}
