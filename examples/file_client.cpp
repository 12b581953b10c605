// portico example: the file client. Uploads a file to file_server, or
// downloads one from it, with the protocol of file_protocol.hpp, and exits 0
// only if the file arrived whole: for an upload, the server stored it with
// the announced size and a matching SHA-256; for a download, the bytes
// received have the size and SHA-256 the server announced.
//
//   file_client [--host ADDRESS] [--port N] [--as NAME] FILE        upload FILE
//   file_client [--host ADDRESS] [--port N] --get NAME [--out PATH]  download NAME
//
//   --host  server address or name (default 127.0.0.1)
//   --port  server port (default 25000)
//   --as    the name to store the file under (default: FILE without its directories)
//   --get   the name of the file to download
//   --out   where to put the download (default: NAME, in the current directory)
//
// Test aids, which make a transfer fail on purpose so that the error paths
// can be exercised:
//
//   --abort-after BYTES  reset the connection (RST) once BYTES of the content were sent
//                        (upload) or received (download)
//   --close-after BYTES  close the connection normally (FIN) once BYTES were sent,
//                        without the end packet (upload)
//   --stall-after BYTES  stop reading for 5 s once BYTES of the content were received,
//                        then read what is left until the connection ends (download)
//
// An upload goes out in 60 KiB data packets, several queued at once while the
// next is read from the disk with an overlapped read; a download is written
// to PATH.part with overlapped writes while the next block arrives, and
// renamed to PATH only once its SHA-256 matched. Neither file is ever read
// into memory whole. Exit status: 0 stored or received, 1 the transfer
// failed, 2 bad arguments or an unreadable FILE.

#include <portico/portico.hpp>
#if defined(_WIN32)
// The Windows SDK, included the way portico includes it.
#include <portico/detail/win/windows.hpp>
#endif

#include "file_lock.hpp"
#include "file_protocol.hpp"
#include "sha256.hpp"
#include "untrusted_text.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
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
using portico::random_access_file;
using portico::task;
using portico::tcp_socket;

constexpr std::uint64_t never = std::numeric_limits<std::uint64_t>::max();

struct settings {
    std::string host = "127.0.0.1";
    std::string port = "25000";
    std::string file; // upload: the file to send
    std::string name; // upload: the name to store it under (empty: FILE's own); download: the file asked for
    std::string out;  // download: where to put it (empty: NAME)
    bool get = false; // download rather than upload
    std::uint64_t abort_after = never;
    std::uint64_t close_after = never;
    std::uint64_t stall_after = never;
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
// their SHA-256, also left in `checksum` (the test aids set `stop_after`: the
// data stops once that much was queued, and no end packet is sent). Reading
// and sending overlap: up to `window` chunks wait in the stream's send queue
// while the next is read, with an overlapped read that blocks no thread.
// When the server reads more slowly, TCP's flow control makes the kernel
// take the chunks more slowly, their writes complete later, and this loop
// waits for a free buffer: the sender never runs ahead by more than the
// window.
task<std::error_code> send_content(packet_stream<tcp_socket>& ps, random_access_file& in, std::uint64_t size,
                                   std::uint64_t stop_after, std::atomic<std::uint64_t>& sent,
                                   file_proto::digest& checksum)
{
    std::array<slot, window> slots;
    file_hash::sha256 hash;
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
        auto [read_ec, got] = co_await in.read_all_at(queued, portico::buffer(s.data.data(), n));
        if (read_ec) {
            error = std::make_error_code(std::errc::io_error); // shrunk, or unreadable, while being sent
            break;
        }
        const std::span<const std::byte> chunk(s.data.data(), got);
        hash.update(chunk);
        queued += got;
        // Starts the write now (packets queue in the order they are started)
        // without waiting for it.
        s.writing.spawn(write_chunk(ps, chunk, s.error, sent));
    }
    for (slot& s : slots) {
        co_await s.writing.join();
        if (!error) error = s.error;
    }
    if (error || queued != size || stop_after != never) co_return error;
    checksum = hash.finish();
    auto [ec] = co_await ps.write_packet(file_proto::end, checksum);
    co_return ec;
}
// snippet-end: send

// Renames `from` to `to`, replacing a file there in one step: "" or why not.
std::string replace_file(const fs::path& from, const fs::path& to)
{
#if defined(_WIN32)
    // MoveFileExW says outright that an existing `to` is replaced.
    if (::MoveFileExW(from.c_str(), to.c_str(), MOVEFILE_REPLACE_EXISTING)) return {};
    return std::system_category().message(static_cast<int>(::GetLastError()));
#else
    std::error_code ec;
    fs::rename(from, to, ec); // rename(2) replaces `to` atomically
    return ec ? ec.message() : std::string{};
#endif
}

double mib_per_second(std::uint64_t bytes, double seconds)
{
    return seconds > 0 ? static_cast<double>(bytes) / (1024.0 * 1024.0) / seconds : 0.0;
}

// Connects `s` to the server, saying why not if it cannot.
task<portico::io_result<portico::endpoint>> connect(tcp_socket& s, const settings& cfg)
{
    auto result = co_await s.connect(cfg.host, cfg.port);
    if (result.error()) {
        std::printf("file_client: cannot connect to %s port %s: %s\n", cfg.host.c_str(), cfg.port.c_str(),
                    result.error().message().c_str());
    }
    co_return result;
}

task<int> upload(io_context& ctx, settings cfg)
{
    co_await ctx.schedule();
    const fs::path path(cfg.file);
    random_access_file in(ctx);
    auto [open_ec] = in.open(path, portico::file_access::read);
    auto [size_ec, size] = in.size();
    if (open_ec || size_ec) {
        std::fprintf(stderr, "file_client: cannot read %s: %s\n", cfg.file.c_str(),
                     (open_ec ? open_ec : size_ec).message().c_str());
        co_return 2;
    }
    // Shared with readers only, as the open says on Windows: file_server
    // does not replace a file this client is uploading from (file_lock.hpp).
    if (file_lock::hold(in, file_lock::kind::shared) != file_lock::outcome::held) {
        std::fprintf(stderr, "file_client: cannot read %s: it is being written\n", cfg.file.c_str());
        co_return 2;
    }
    if (cfg.name.empty()) {
        const std::u8string own = path.filename().u8string();
        cfg.name.assign(own.begin(), own.end());
    }

    tcp_socket s(ctx);
    auto [connect_ec, server] = co_await connect(s, cfg);
    if (connect_ec) co_return 1;
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
    file_proto::digest checksum{};
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
    if (answer && answer->code == status::stored && (answer->bytes != size || answer->hash != checksum)) {
        std::printf("file_client: the server says it stored %s, but its copy has %llu bytes and sha256 %s, "
                    "where ours has %llu and %s\n",
                    cfg.name.c_str(), static_cast<unsigned long long>(answer->bytes),
                    file_hash::hex(answer->hash).c_str(), total, file_hash::hex(checksum).c_str());
        co_return 1;
    }
    if (answer && answer->code == status::stored) {
        std::printf("sent %s: %llu bytes in %.2f s (%.1f MiB/s), sha256 %s; stored by the server, hash matched\n",
                    cfg.name.c_str(), done, seconds, mib_per_second(done, seconds),
                    file_hash::hex(answer->hash).c_str());
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

// snippet-begin: download
// The download's connection is read without a packet_stream: after the
// content packet come `size` unframed bytes, and a stream's receive ring
// reads ahead, so some of them would land in it. So the request and the
// answer are framed by hand, with the same format the server's stream uses,
// and the content is read straight into the blocks written to the file.
task<std::error_code> read_packet_by_hand(tcp_socket& s, const portico::packet_format& format, std::uint32_t& type,
                                          std::vector<std::byte>& body)
{
    std::array<std::byte, 4> header{};
    if (auto [ec, n] = co_await s.read_all(portico::buffer(header)); ec) co_return ec;
    auto [ec, parsed] = portico::decode_header(format, header); // checks the size before anything else
    if (ec) co_return ec;
    type = parsed.type;
    body.resize(parsed.body_size);
    auto [body_ec, n] = co_await s.read_all(portico::buffer(body));
    co_return body_ec;
}

// Receives `size` bytes into `out` at offset 0 and hashes them. Two blocks:
// while one is written to the file (an overlapped write), the next is read
// from the connection, so the disk and the network work at once.
task<std::error_code> receive_content(tcp_socket& s, random_access_file& out, std::uint64_t size,
                                      std::uint64_t stop_after, std::uint64_t& received, file_proto::digest& hash)
{
    constexpr std::size_t block_size = 256 * 1024;
    std::array<std::vector<std::byte>, 2> blocks{std::vector<std::byte>(block_size),
                                                 std::vector<std::byte>(block_size)};
    file_hash::sha256 sha;
    auto next_read = [&](std::vector<std::byte>& block) {
        const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(block_size, size - received));
        return s.read_some(portico::buffer(block.data(), n));
    };
    if (size == 0) {
        hash = sha.finish();
        co_return std::error_code{};
    }
    std::size_t current = 0;
    auto [ec, n] = co_await next_read(blocks[current]);
    for (;;) {
        if (ec) co_return ec; // eof: the server closed before the end
        const std::span<const std::byte> got(blocks[current].data(), n);
        sha.update(got);
        const std::uint64_t at = received;
        received += n;
        if (received >= stop_after) co_return std::make_error_code(std::errc::operation_canceled);
        if (received == size) {
            auto [write_ec, written] = co_await out.write_all_at(at, portico::buffer(got.data(), got.size()));
            if (write_ec) co_return write_ec;
            break;
        }
        const std::size_t other = 1 - current;
        auto [write, read] = co_await portico::when_all(out.write_all_at(at, portico::buffer(got.data(), got.size())),
                                                        next_read(blocks[other]));
        if (write.error()) co_return write.error();
        ec = read.error();
        n = read.value_unchecked();
        current = other;
    }
    hash = sha.finish();
    co_return std::error_code{};
}

task<int> download(io_context& ctx, settings cfg)
{
    co_await ctx.schedule();
    const fs::path target(cfg.out.empty() ? cfg.name : cfg.out);
    fs::path part = target;
    part += ".part";

    tcp_socket s(ctx);
    auto [connect_ec, server] = co_await connect(s, cfg);
    if (connect_ec) co_return 1;
    const portico::packet_format format; // the default, as the server's stream
    std::array<std::byte, 4> header{};
    (void)portico::encode_header(format, file_proto::get, cfg.name.size(), header);
    const std::array<portico::const_buffer, 2> request{portico::buffer(header), portico::buffer(cfg.name)};
    if (auto [ec, n] = co_await s.write_all(request); ec) {
        std::printf("file_client: sending the request: %s\n", ec.message().c_str());
        co_return 1;
    }
    std::uint32_t type = 0;
    std::vector<std::byte> body;
    if (auto ec = co_await read_packet_by_hand(s, format, type, body); ec) {
        std::printf("file_client: waiting for the server: %s\n", ec.message().c_str());
        co_return 1;
    }
    if (type == file_proto::result) {
        const auto refusal = file_proto::parse_result(body);
        std::printf("file_client: the server refused %s: %s\n", cfg.name.c_str(),
                    refusal ? example::escaped(refusal->message).c_str() : "(malformed answer)");
        co_return 1;
    }
    const auto announced = file_proto::parse_content(body);
    if (type != file_proto::content || !announced) {
        std::printf("file_client: unexpected answer from the server (type %u)\n", static_cast<unsigned>(type));
        co_return 1;
    }
    std::printf("downloading %s, %llu bytes, from %s\n", cfg.name.c_str(),
                static_cast<unsigned long long>(announced->size), server.to_string().c_str());

    // PATH.part, ours alone while it fills; PATH only once the hash matched.
    random_access_file out(ctx);
    if (auto [ec] = out.open(part, portico::file_access::write, portico::file_creation::create_always,
                             portico::file_share::none);
        ec) {
        std::printf("file_client: cannot create %s: %s\n", part.string().c_str(), ec.message().c_str());
        co_return 1;
    }
    const auto start = std::chrono::steady_clock::now();
    std::uint64_t received = 0;
    file_proto::digest hash{};
    std::error_code ec =
        co_await receive_content(s, out, announced->size, std::min(cfg.abort_after, cfg.stall_after), received, hash);
    const bool stalled = ec == std::errc::operation_canceled && received >= cfg.stall_after;
    if (stalled) {
        // A client that stops reading: the server's transfer waits for it
        // until its --stall-timeout drops the connection. Then what the
        // connection still holds is read, to its end.
        auto [slept] = co_await ctx.sleep_for(std::chrono::seconds(5));
        (void)slept;
        std::vector<std::byte> rest(256 * 1024);
        for (;;) {
            auto [read_ec, n] = co_await s.read_some(portico::buffer(rest));
            if (read_ec) {
                ec = read_ec;
                break;
            }
        }
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    out.close();
    if (cfg.abort_after != never) {
        (void)s.set_linger(true, 0); // closing resets the connection (RST)
        s.close();
    }
    std::string why;
    if (ec == std::errc::operation_canceled && cfg.abort_after != never) {
        why = "stopped on purpose (--abort-after, a test aid): connection reset";
    } else if (stalled) {
        why = "stopped reading for 5 s on purpose (--stall-after, a test aid), then: " +
              std::string(ec == portico::errc::eof ? "the server closed the connection" : ec.message());
    } else if (ec) {
        why = ec == portico::errc::eof ? "the server closed the connection early" : ec.message();
    } else if (hash != announced->hash) {
        why = "the bytes received have sha256 " + file_hash::hex(hash) + ", the server announced " +
              file_hash::hex(announced->hash);
    } else if (const std::string failed = replace_file(part, target); !failed.empty()) {
        why = "cannot rename " + part.string() + ": " + failed;
    }
    if (!why.empty()) {
        std::error_code ignored; // a part that cannot be deleted is left, and said nothing of
        fs::remove(part, ignored);
        std::printf("file_client: download of %s failed after %llu of %llu bytes: %s\n", cfg.name.c_str(),
                    static_cast<unsigned long long>(received), static_cast<unsigned long long>(announced->size),
                    why.c_str());
        co_return 1;
    }
    std::printf("received %s: %llu bytes in %.2f s (%.1f MiB/s), sha256 %s; matches the server's\n", cfg.name.c_str(),
                static_cast<unsigned long long>(received), seconds, mib_per_second(received, seconds),
                file_hash::hex(hash).c_str());
    co_return 0;
}
// snippet-end: download

constexpr const char* usage =
    "usage: file_client [--host ADDRESS] [--port N] [--as NAME] FILE\n"
    "       file_client [--host ADDRESS] [--port N] --get NAME [--out PATH]\n"
    "  --host  server address or name (default 127.0.0.1)\n"
    "  --port  server port (default 25000)\n"
    "  --as    the name to store FILE under (default: FILE without its directories)\n"
    "  --get   download the file NAME\n"
    "  --out   where to put the download (default: NAME in the current directory)\n"
    "Test aids, which make a transfer fail on purpose to exercise the error paths:\n"
    "  --abort-after BYTES  reset the connection (RST) once BYTES of the content were sent or received\n"
    "  --close-after BYTES  close the connection normally (FIN) once BYTES were sent, without the end packet\n"
    "  --stall-after BYTES  stop reading for 5 s once BYTES were received, then read until the connection ends\n"
    "Exit status: 0 stored or received, 1 the transfer failed, 2 bad arguments or an unreadable FILE.\n";

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
        } else if (arg == "--get") {
            cfg.name = value;
            cfg.get = true;
        } else if (arg == "--out") {
            cfg.out = value;
        } else if (arg == "--abort-after") {
            cfg.abort_after = std::strtoull(value, nullptr, 10);
        } else if (arg == "--close-after") {
            cfg.close_after = std::strtoull(value, nullptr, 10);
        } else if (arg == "--stall-after") {
            cfg.stall_after = std::strtoull(value, nullptr, 10);
        } else {
            return std::nullopt;
        }
    }
    // One FILE to upload, or one NAME to download, not both.
    if (cfg.get ? !cfg.file.empty() || cfg.name.empty() || cfg.close_after != never : cfg.file.empty()) {
        return std::nullopt;
    }
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
        result = portico::sync_wait(cfg->get ? download(ctx, *cfg) : upload(ctx, *cfg));
        ctx.stop();
    }
    return result;
}
