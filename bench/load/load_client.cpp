// The benchmark load client: drives one of the benchmark servers
// (bench/PROTOCOL.md) from one thread and prints one JSON object. See --help.

#include "byte_pattern.hpp"
#include "modes.hpp"
#include "options.hpp"

#include <netdb.h>
#include <sys/resource.h>

#include <algorithm>
#include <charconv>
#include <cinttypes>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>

namespace {

constexpr const char* help_text = R"(usage: load_client --port P --mode MODE [options]
       load_client --write-file PATH --size B [--seed N]

Load for the benchmark servers (bench/PROTOCOL.md; server mode in brackets).
One thread, one edge-triggered epoll loop, non-blocking sockets with
TCP_NODELAY. Every byte that comes back is checked against what was sent.

modes:
  pingpong  [echo]    each connection sends a message, waits for all of its echo,
                      sends the next; rtt: send to end of echo. With
                      --connect-first, each connects and is pinged once (one
                      message, its echo checked, not timed) before any other
                      sends; then "connected: A active, I idle" goes to
                      stderr and the warm-up begins. With --idle-connections
                      N (implies --connect-first), N more connections are
                      opened and pinged first, then stay silent while the
                      active ones run; after the window each is pinged
                      again: one closed, or unanswered, is an error
  pipeline  [packet]  each connection keeps --depth packets in flight: u16 size
                      (whole packet) + u16 type, little-endian, then a --size byte
                      body that starts with the packet's sequence number; every
                      packet back is checked, timed from its send and replaced;
                      packets due together go out in one send call
  bulk      [sink]    --size byte chunks as fast as the kernel takes them;
            [echo]    --direction oneway counts what the kernel took, both also
                      reads the echo, checks it and counts that; no rtt
  churn     [echo]    each connection loops: connect, one message, its echo,
                      close; rtt: the cycle, from the start of the connect
  burst     [echo]    all connections connect at once, each sends one message
                      and waits for its echo, then all close; repeated until the
                      measured window is over (bursts that start before it are
                      warm-up; at least one is counted); rtt: per connection,
                      from the start of its connect to its echo
  idle      [echo]    connects, pings each connection, prints "idle: N
                      connected" to stderr, stays silent for --duration seconds
                      (or until stdin ends, --hold-stdin), pings each again.
                      With --framed [packet] each ping is a packet
  fanout    [fanout]  --connections receivers, then one sender that sends
                      pipeline's packets (--size >= 8: the body starts with
                      the sequence number); the server delivers each to every
                      other connection. The sender keeps at most --depth
                      packets ahead of the slowest receiver; receivers read
                      as fast as they can and each checks that it gets every
                      packet, in order, from the first that reached it (the
                      sender sends one at a time until each receiver has had
                      one, before the warm-up, then prints "joined: N
                      receivers" to stderr); messages: deliveries;
                      rtt: one way, from the send of a packet to the receive
                      of its last byte at a receiver
  download  [download] each connection sends "GET ", reads the server's file
                      whole (--size bytes, each checked: the file must be the
                      one --write-file writes), and asks again; messages:
                      files; rtt: request to last byte

  Where every connection is opened before the traffic (idle, fanout,
  --connect-first), connects and pings go out at most 256 at a time.

options:
  --host H          server address (default 127.0.0.1)
  --port P          server port (required)
  --mode M          one of the modes above (required)
  --connections N   connections, churn's concurrent loops, or fanout's receivers
                    (default 1)
  --idle-connections N
                    pingpong: silent connections beside the active ones
                    (default 0); not timed, not counted in messages
  --size B          message, packet body or chunk bytes (default 64; bulk 65536)
  --depth D         pipeline: packets in flight per connection; fanout: packets
                    the sender may be ahead of the slowest receiver (default 16)
  --direction D     bulk: oneway or both (default oneway)
  --duration S      measured seconds (default 3); idle: the silent time
  --warmup S        seconds from the start to the measured window, not counted
                    (default 1; not for idle); connections open in it
  --seed N          seed of the pseudo-random bytes messages are made of (default 1)
  --hold-stdin      idle: stay silent until stdin ends, not --duration seconds
  --framed          pingpong and idle [packet]: each message is a packet as in
                    pipeline (a 4-byte header, then a --size byte body that
                    starts with its sequence number), echoed by the packet
                    modes
  --connect-first   pingpong: connect and ping every connection before the
                    warm-up (a server slow to accept many at once is not
                    timed while it accepts)
  --write-file PATH no test: write the file the download mode expects, --size
                    bytes of the pattern of --seed, to PATH, and exit

output, one line on stdout:
  {"mode", "connections", "idle_connections", "size", "depth" (pipeline and fanout, else null), "direction"
   (bulk, else null), "duration_s", "messages", "msgs_per_s", "bytes_per_s",
   "rtt_us": {"p50", "p99", "p999", "max", "worst_connection_p50",
   "best_connection_p50", "connections_timed"} or null, "errors"}
  messages: round trips, packets, chunks (bulk oneway: taken by the kernel;
  both: echoed), cycles, connections echoed (burst), pings answered (idle)
  or packets delivered to receivers (fanout), completed in the measured
  window (idle: all); bytes_per_s: their bytes, a
  round trip's once, a packet's with its header. duration_s: the measured
  window; burst: the sum of the counted bursts' times (so msgs_per_s is
  connections per second of burst); idle: the silent time. rtt_us:
  microseconds; p50 to max over every time, within 1% (a histogram with 128
  buckets per power of two). worst_connection_p50 and best_connection_p50:
  the largest and the smallest of the connections' own medians (each
  connection keeps a histogram of its times with 32 buckets per power of
  two: within 2%), over the connections_timed connections that timed
  anything (churn and burst: per connection slot, fanout: per receiver).

errors: connects refused or failed, resets, closes by the server, a connect, an
  echo or a delivery (fanout: to the slowest receiver) not done in 10 s, and
  bytes back that differ from those sent. Each
  closes its connection, which is not replaced (churn starts its next cycle);
  the first 10 are described on stderr.

exit status: 0 without errors; 1 with errors, but for burst only if bytes came
  back wrong or no connection of the counted bursts succeeded (connections
  failing under a burst are counted and expected); 2 for a bad command line or
  a failure to start (no JSON then).
)";

[[noreturn, gnu::format(printf, 1, 2)]] void usage_error(const char* format, ...)
{
    std::fputs("load_client: ", stderr);
    va_list args;
    va_start(args, format);
    std::vfprintf(stderr, format, args);
    va_end(args);
    std::fputs(" (see --help)\n", stderr);
    std::exit(2);
}

template <class Number>
Number parse_number(std::string_view name, std::string_view text)
{
    Number value{};
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc{} || end != text.data() + text.size())
        usage_error("%.*s: not a number: %.*s", static_cast<int>(name.size()), name.data(),
                    static_cast<int>(text.size()), text.data());
    return value;
}

load::test_mode parse_mode(std::string_view text)
{
    using load::test_mode;
    if (text == "pingpong") return test_mode::pingpong;
    if (text == "pipeline") return test_mode::pipeline;
    if (text == "bulk") return test_mode::bulk;
    if (text == "churn") return test_mode::churn;
    if (text == "burst") return test_mode::burst;
    if (text == "idle") return test_mode::idle;
    if (text == "fanout") return test_mode::fanout;
    if (text == "download") return test_mode::download;
    usage_error("unknown mode: %.*s", static_cast<int>(text.size()), text.data());
}

const char* mode_name(load::test_mode mode)
{
    switch (mode) {
    case load::test_mode::pingpong: return "pingpong";
    case load::test_mode::pipeline: return "pipeline";
    case load::test_mode::bulk: return "bulk";
    case load::test_mode::churn: return "churn";
    case load::test_mode::burst: return "burst";
    case load::test_mode::idle: return "idle";
    case load::test_mode::fanout: return "fanout";
    case load::test_mode::download: return "download";
    }
    return "?";
}

load::options parse_options(int argc, char** argv)
{
    load::options opts;
    bool have_mode = false;
    bool have_size = false;
    for (int i = 1; i < argc; ++i) {
        const std::string_view name = argv[i];
        const auto value = [&] {
            if (i + 1 == argc) usage_error("%s needs a value", argv[i]);
            return std::string_view(argv[++i]);
        };
        if (name == "--help" || name == "-h") {
            std::fputs(help_text, stdout);
            std::exit(0);
        } else if (name == "--host") {
            opts.host = value();
        } else if (name == "--port") {
            opts.port = value();
        } else if (name == "--mode") {
            opts.mode = parse_mode(value());
            have_mode = true;
        } else if (name == "--connections") {
            opts.connections = parse_number<std::size_t>(name, value());
        } else if (name == "--idle-connections") {
            opts.idle_connections = parse_number<std::size_t>(name, value());
        } else if (name == "--size") {
            opts.size = parse_number<std::size_t>(name, value());
            have_size = true;
        } else if (name == "--depth") {
            opts.depth = parse_number<std::size_t>(name, value());
        } else if (name == "--direction") {
            const auto direction = value();
            if (direction == "oneway")
                opts.direction = load::bulk_direction::oneway;
            else if (direction == "both")
                opts.direction = load::bulk_direction::both;
            else
                usage_error("--direction: oneway or both, not %.*s", static_cast<int>(direction.size()),
                            direction.data());
        } else if (name == "--duration") {
            opts.duration_s = parse_number<double>(name, value());
        } else if (name == "--warmup") {
            opts.warmup_s = parse_number<double>(name, value());
        } else if (name == "--seed") {
            opts.seed = parse_number<std::uint64_t>(name, value());
        } else if (name == "--hold-stdin") {
            opts.hold_stdin = true;
        } else if (name == "--connect-first") {
            opts.connect_first = true;
        } else if (name == "--framed") {
            opts.framed = true;
        } else if (name == "--write-file") {
            opts.write_file = value();
        } else {
            usage_error("unknown option %s", argv[i]);
        }
    }

    if (!opts.write_file.empty()) {
        if (opts.size < 1 || opts.size > (64u << 20)) usage_error("--size: 1 to 67108864");
        return opts;
    }
    if (opts.port.empty()) usage_error("--port is required");
    if (!have_mode) usage_error("--mode is required");
    if (!have_size && opts.mode == load::test_mode::bulk) opts.size = 65536;
    if (opts.connections < 1 || opts.connections > 1'000'000) usage_error("--connections: 1 to 1000000");
    if (opts.idle_connections > 1'000'000) usage_error("--idle-connections: 0 to 1000000");
    if (opts.idle_connections > 0 && opts.mode != load::test_mode::pingpong)
        usage_error("--idle-connections is for --mode pingpong");
    if (opts.connect_first && opts.mode != load::test_mode::pingpong)
        usage_error("--connect-first is for --mode pingpong");
    if (opts.framed && opts.mode != load::test_mode::pingpong && opts.mode != load::test_mode::idle)
        usage_error("--framed is for --mode pingpong and idle");
    if (opts.mode == load::test_mode::pipeline || opts.mode == load::test_mode::fanout || opts.framed) {
        // The size field counts the 4-byte header and has 16 bits.
        if (opts.size > 65535 - 4) usage_error("--size: at most 65531 for pipeline, fanout and --framed");
        if (opts.depth < 1 || opts.depth > 65536) usage_error("--depth: 1 to 65536");
        // A receiver learns where its stream starts from the sequence number.
        if (opts.mode == load::test_mode::fanout && opts.size < 8) usage_error("--size: at least 8 for fanout");
    } else if (opts.size < 1 || opts.size > (64u << 20)) {
        usage_error("--size: 1 to 67108864");
    }
    if (!std::isfinite(opts.duration_s) || opts.duration_s <= 0) usage_error("--duration: more than 0 seconds");
    if (!std::isfinite(opts.warmup_s) || opts.warmup_s < 0) usage_error("--warmup: 0 seconds or more");
    if (opts.hold_stdin && opts.mode != load::test_mode::idle) usage_error("--hold-stdin is for --mode idle");
    return opts;
}

load::endpoint resolve(const load::options& opts)
{
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (const int error = ::getaddrinfo(opts.host.c_str(), opts.port.c_str(), &hints, &found); error != 0)
        throw std::runtime_error("cannot resolve " + opts.host + " port " + opts.port + ": " + ::gai_strerror(error));
    load::endpoint server;
    std::memcpy(&server.address, found->ai_addr, found->ai_addrlen);
    server.size = found->ai_addrlen;
    ::freeaddrinfo(found);
    return server;
}

// One descriptor per connection (a burst has them all open at once), and a
// few for epoll and stdio.
void raise_descriptor_limit(std::size_t connections)
{
    const rlim_t needed = connections + 32;
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= needed) return;
    if (limit.rlim_max != RLIM_INFINITY && limit.rlim_max < needed)
        throw std::runtime_error(std::to_string(connections) + " connections need " + std::to_string(needed) +
                                 " file descriptors, and the hard limit is " + std::to_string(limit.rlim_max));
    limit.rlim_cur = needed;
    if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) throw std::runtime_error("setrlimit(RLIMIT_NOFILE) failed");
}

void print_json(const load::options& opts, const load::session& result)
{
    const double seconds = result.measured_s();
    const auto per_second = [&](double n) { return seconds > 0 ? n / seconds : 0.0; };
    std::printf("{\"mode\":\"%s\",\"connections\":%zu,\"idle_connections\":%zu,\"size\":%zu,", mode_name(opts.mode),
                opts.connections, opts.idle_connections, opts.size);
    if (opts.mode == load::test_mode::pipeline || opts.mode == load::test_mode::fanout)
        std::printf("\"depth\":%zu,", opts.depth);
    else
        std::printf("\"depth\":null,");
    if (opts.mode == load::test_mode::bulk)
        std::printf("\"direction\":\"%s\",", opts.direction == load::bulk_direction::both ? "both" : "oneway");
    else
        std::printf("\"direction\":null,");
    std::printf("\"duration_s\":%.3f,\"messages\":%" PRIu64 ",\"msgs_per_s\":%.1f,\"bytes_per_s\":%.1f,", seconds,
                result.messages(), per_second(static_cast<double>(result.messages())),
                per_second(static_cast<double>(result.bytes())));
    const auto& rtt = result.rtt();
    if (rtt.count() == 0)
        std::printf("\"rtt_us\":null,");
    else {
        const auto medians = result.medians();
        std::printf("\"rtt_us\":{\"p50\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f,"
                    "\"worst_connection_p50\":%.1f,\"best_connection_p50\":%.1f,\"connections_timed\":%zu},",
                    rtt.quantile_us(500), rtt.quantile_us(990), rtt.quantile_us(999), rtt.max_us(), medians.worst_us,
                    medians.best_us, medians.connections);
    }
    std::printf("\"errors\":%" PRIu64 "}\n", result.errors());
    std::fflush(stdout);
}

int exit_status(const load::options& opts, const load::session& result)
{
    if (opts.mode == load::test_mode::burst) return result.data_errors() > 0 || result.messages() == 0 ? 1 : 0;
    return result.errors() > 0 ? 1 : 0;
}

// --write-file: the download mode's file, byte i the pattern's byte i.
int write_file(const load::options& opts)
{
    const load::byte_pattern pattern(opts.seed, 0);
    std::FILE* out = std::fopen(opts.write_file.c_str(), "wb");
    if (out == nullptr) {
        std::fprintf(stderr, "load_client: cannot create %s\n", opts.write_file.c_str());
        return 2;
    }
    for (std::size_t at = 0; at < opts.size;) {
        const std::size_t n = std::min(opts.size - at, load::byte_pattern::period - at % load::byte_pattern::period);
        if (std::fwrite(pattern.at(at), 1, n, out) != n) {
            std::fclose(out);
            std::fprintf(stderr, "load_client: cannot write %s\n", opts.write_file.c_str());
            return 2;
        }
        at += n;
    }
    return std::fclose(out) == 0 ? 0 : 2;
}

} // namespace

int main(int argc, char** argv)
{
    const load::options opts = parse_options(argc, argv);
    if (!opts.write_file.empty()) return write_file(opts);
    try {
        raise_descriptor_limit(opts.connections + opts.idle_connections + 1); // fanout's sender
        const auto test = load::make_session(opts, resolve(opts));
        test->run();
        print_json(opts, *test);
        if (test->errors() > load::reported_errors)
            std::fprintf(stderr, "load_client: %" PRIu64 " errors, the first %" PRIu64 " described above\n",
                         test->errors(), load::reported_errors);
        return exit_status(opts, *test);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "load_client: %s\n", e.what());
        return 2;
    }
}
