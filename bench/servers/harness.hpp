// The harness every benchmark server shares (bench/PROTOCOL.md): command line, the
// "listening on" line, the stdin control loop with its stats JSON line, the counting
// global operator new/delete and, under Windows, the Win32 call counter (natively there
// is none: harness_linux.cpp). No Windows types here, so a server includes it before or
// after its own Windows headers.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <vector>

namespace bench {

enum class mode { echo, packet, sink, fanout, download, echo_lean, packet_lean };

[[nodiscard]] constexpr bool is_lean(mode m) noexcept { return m == mode::echo_lean || m == mode::packet_lean; }

struct options {
    bench::mode mode = mode::echo;
    std::uint16_t port = 0;
    unsigned threads = 1;
    // --file: the file the download mode sends (a path as the program receives it).
    const char* file = nullptr;
    // Scheduling knobs, for the servers that have them (portico's io_context::options); unset
    // means the library's default. A server without the knob refuses the flag.
    std::optional<unsigned> inline_budget;
    std::optional<unsigned> batch_size;
    std::optional<bool> skip_on_success;
    std::optional<unsigned> port_check_interval;
    // --idle-spin US: how long a thread with nothing to run looks for work before it blocks
    // (portico: io_context::options::idle_spin; the native peers spin the same way, so that a
    // spinning run compares like with like).
    std::optional<unsigned> idle_spin_us;
    // Download mode: the file bytes per TransmitFile call (transmit_file_options::bytes_per_call);
    // unset: the library's default, the whole file up to 1 GiB per call.
    std::optional<std::uint64_t> transmit_part;
    // --exit-after N: end the process once N connections have closed (connection_closed), for a
    // measurement that cannot ask it to quit (bench/callgrind_echo.sh); unset: never.
    std::optional<std::uint64_t> exit_after;
};

// Parses --mode echo|packet|sink|fanout|download|echo-lean|packet-lean, --port N, --threads N (N >= 1),
// --file PATH (download: required), and the scheduling knobs --inline-budget N, --batch N (N >= 1),
// --skip-on-success 0|1, --port-check N (N >= 1), --idle-spin US, --exit-after N (N >= 1), and --transmit-part BYTES
// (download: bytes per TransmitFile call); prints usage to stderr and exits with status 2 on bad input.
[[nodiscard]] options parse_options(int argc, char** argv);

// For a server without portico's scheduling knobs: exits with status 2, saying so, if any was
// given (--idle-spin too, unless the server spins: spins_when_idle).
void refuse_scheduling_knobs(const options& opts, const char* impl, bool spins_when_idle = false);

// Call as the first statement of main, before any socket exists. Windows: patches this
// program's import table so every call into ws2_32, mswsock and the kernel32 completion-port
// functions is counted (and AcceptEx & co. obtained through WSAIoctl); does not start Winsock:
// the server does that. Linux: does nothing (no calls are counted). Call once, from one thread.
void start_counting();

// Connection counters the server keeps: accepted is the total, open those open now.
struct counters {
    std::atomic<std::uint64_t> accepted{0};
    std::atomic<std::int64_t> open{0};
    std::atomic<std::uint64_t> closed{0};
};

// Counts a connection that closed, in c.open and c.closed. With --exit-after N, the Nth ends the
// process on the spot (stdout flushed, status 0, no destructors run): under callgrind the
// ring's thread may hold valgrind's thread lock while it waits, so the control thread could
// never read "quit", and this thread is the one that runs.
void connection_closed(counters& c) noexcept;

// Prints "listening on 127.0.0.1:PORT" and flushes stdout.
void print_listening(std::uint16_t port);

// Reads commands from stdin on the calling thread until "quit" or end of input; on "stats"
// prints the JSON line of PROTOCOL.md (impl name, mode, the counters, allocation and call
// counts) and flushes. Returns when the server should shut down.
void run_control(const char* impl, const options& opts, const counters& c);

// The sizes PROTOCOL.md fixes.
inline constexpr std::size_t receive_buffer_size = 64 * 1024;
inline constexpr std::size_t packet_header_size = 4;
// The framed modes' scan (PROTOCOL.md, packet), for the raw servers that answer from their
// receive buffer: `whole` is the length of the whole packets at the front of the `size`
// bytes at `data`; `malformed`, whether a header below the minimum size follows them.
struct packet_scan {
    std::size_t whole = 0;
    bool malformed = false;
};
[[nodiscard]] packet_scan scan_packets(const unsigned char* data, std::size_t size) noexcept;

// The download mode's request: a connection that starts with these 4 bytes asks for the file,
// once per request; any other connection is an echo connection.
inline constexpr char download_request[4] = {'G', 'E', 'T', ' '};
// The block the Asio server reads the file in, and sends.
inline constexpr std::size_t file_block_size = 64 * 1024;

// The receive buffers of the lean modes (PROTOCOL.md): a connection borrows one
// when data has arrived and gives it back once its answer is sent, so an idle
// connection holds none. Buffers (receive_buffer_size bytes) are made when none
// is free and kept until the pool is destroyed: in steady state, borrowing
// allocates nothing. Thread-safe: one lock per borrow and one per return.
class buffer_pool {
public:
    buffer_pool() = default;
    buffer_pool(const buffer_pool&) = delete;
    buffer_pool& operator=(const buffer_pool&) = delete;
    ~buffer_pool();

    [[nodiscard]] std::byte* borrow();
    void give_back(std::byte* buffer) noexcept;
    // Buffers made so far: lent and free.
    [[nodiscard]] std::size_t buffers() const noexcept;

private:
    mutable std::mutex mutex_;
    std::vector<std::byte*> free_; // capacity >= buffers_, so give_back never allocates
    std::size_t buffers_ = 0;
};

// The process's one pool, which the stats line reports (pool_bytes).
[[nodiscard]] buffer_pool& receive_pool();

// One buffer borrowed from the process's pool for as long as this lives.
class pooled_buffer {
public:
    pooled_buffer() : data_(receive_pool().borrow()) {}
    ~pooled_buffer() { receive_pool().give_back(data_); }
    pooled_buffer(const pooled_buffer&) = delete;
    pooled_buffer& operator=(const pooled_buffer&) = delete;

    [[nodiscard]] std::byte* data() const noexcept { return data_; }
    [[nodiscard]] static constexpr std::size_t size() noexcept { return receive_buffer_size; }

private:
    std::byte* data_;
};

} // namespace bench
