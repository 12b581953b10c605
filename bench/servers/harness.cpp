// The shared benchmark harness (bench/PROTOCOL.md), its portable part: options, control loop,
// stats line, and the replaced global operator new/delete that counts allocations. What
// depends on the system (counting calls into it, binary stdout, aligned blocks) is in
// harness_win.cpp and harness_linux.cpp, behind harness_platform.hpp.
#include "harness.hpp"

#include "harness_platform.hpp"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <limits>
#include <mutex>
#include <new>
#include <string_view>

namespace bench {
namespace {

struct allocation_counters {
    std::atomic<std::uint64_t> allocs{0};
    std::atomic<std::uint64_t> frees{0};
    std::atomic<std::uint64_t> bytes{0};
    std::atomic<std::int64_t> live{0};
};

// NOTE: constinit, because the C++ runtime allocates during static initialisation, before any
// dynamic initialiser of ours could have run.
constinit allocation_counters allocations;

constexpr std::size_t default_alignment = __STDCPP_DEFAULT_NEW_ALIGNMENT__;

// --exit-after's N, read by connection_closed on any thread; 0: never.
std::atomic<std::uint64_t> exit_after_closed{0};

// NOTE: every block carries its requested size in the 8 bytes just below the pointer handed
// out, so that unsized delete can take it off live_bytes. The prefix is a whole alignment unit
// (16 bytes, or the requested over-alignment), so the pointer handed out keeps its alignment.
// Over-aligned blocks come from platform::aligned_block, which the matching aligned delete frees.
[[nodiscard]] void* try_allocate(std::size_t size, std::size_t alignment) noexcept
{
    const std::size_t prefix = std::max(alignment, default_alignment);
    if (size > std::numeric_limits<std::size_t>::max() - prefix) return nullptr;
    void* raw =
        alignment > default_alignment ? platform::aligned_block(size + prefix, prefix) : std::malloc(size + prefix);
    if (raw == nullptr) return nullptr;
    auto* user = static_cast<std::byte*>(raw) + prefix;
    std::memcpy(user - sizeof size, &size, sizeof size);
    allocations.allocs.fetch_add(1, std::memory_order_relaxed);
    allocations.bytes.fetch_add(size, std::memory_order_relaxed);
    // RACE: release pairs with print_stats' acquire of live: a block it sees in live_bytes is
    // in allocs and alloc_bytes too.
    allocations.live.fetch_add(static_cast<std::int64_t>(size), std::memory_order_release);
    return user;
}

[[nodiscard]] void* allocate(std::size_t size, std::size_t alignment)
{
    for (;;) {
        if (void* user = try_allocate(size, alignment)) return user;
        const std::new_handler handler = std::get_new_handler();
        if (handler == nullptr) throw std::bad_alloc();
        handler();
    }
}

[[nodiscard]] void* allocate_nothrow(std::size_t size, std::size_t alignment) noexcept
{
    try {
        return allocate(size, alignment);
    } catch (const std::bad_alloc&) {
        return nullptr;
    }
}

void deallocate(void* pointer, std::size_t alignment) noexcept
{
    if (pointer == nullptr) return;
    auto* user = static_cast<std::byte*>(pointer);
    std::size_t size = 0;
    std::memcpy(&size, user - sizeof size, sizeof size);
    allocations.frees.fetch_add(1, std::memory_order_relaxed);
    allocations.live.fetch_sub(static_cast<std::int64_t>(size), std::memory_order_relaxed);
    const std::size_t prefix = std::max(alignment, default_alignment);
    if (alignment > default_alignment) {
        platform::free_aligned_block(user - prefix);
    } else {
        std::free(user - prefix);
    }
}

[[noreturn]] void usage(const char* program, const char* problem)
{
    if (problem != nullptr) std::fprintf(stderr, "%s: %s\n", program, problem);
    std::fprintf(stderr,
                 "usage: %s --mode echo|packet|sink|fanout|download|echo-lean|packet-lean [--port N] [--threads N]\n"
                 "       [--file PATH]\n",
                 program);
    std::exit(2);
}

template <typename Number>
[[nodiscard]] bool parse_number(const char* text, Number low, Number high, Number& result)
{
    const std::string_view digits = text;
    unsigned long long value = 0;
    const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (error != std::errc{} || end != digits.data() + digits.size() || value < low || value > high) return false;
    result = static_cast<Number>(value);
    return true;
}

[[nodiscard]] const char* mode_name(mode m)
{
    switch (m) {
    case mode::echo: return "echo";
    case mode::packet: return "packet";
    case mode::sink: return "sink";
    case mode::fanout: return "fanout";
    case mode::download: return "download";
    case mode::echo_lean: return "echo-lean";
    case mode::packet_lean: return "packet-lean";
    }
    return "unknown";
}

// Builds the stats line without operator new, so printing it does not change what it reports.
class line_writer {
public:
    void text(std::string_view s)
    {
        const std::size_t n = std::min(s.size(), sizeof buffer_ - length_);
        std::memcpy(buffer_ + length_, s.data(), n);
        length_ += n;
    }
    void number(std::uint64_t value)
    {
        length_ = static_cast<std::size_t>(std::to_chars(buffer_ + length_, std::end(buffer_), value).ptr - buffer_);
    }
    void signed_number(std::int64_t value)
    {
        length_ = static_cast<std::size_t>(std::to_chars(buffer_ + length_, std::end(buffer_), value).ptr - buffer_);
    }
    void field(std::string_view key, std::uint64_t value)
    {
        text(",\"");
        text(key);
        text("\":");
        number(value);
    }
    void flush()
    {
        std::fwrite(buffer_, 1, length_, stdout);
        std::fflush(stdout);
        length_ = 0;
    }

private:
    char buffer_[platform::max_counted_functions * 64 + 1024];
    std::size_t length_ = 0;
};

// The counted calls: their total, each function's, and the dequeues (the Windows harness).
void print_calls(line_writer& line, const platform::call_count* calls, std::size_t count,
                 const platform::call_totals& totals)
{
    std::uint64_t total = 0;
    for (std::size_t i = 0; i != count; ++i) total += calls[i].calls;
    line.field("win32_calls", total);
    line.text(",\"calls\":{");
    // NOTE: one function reached at several addresses (an extension function of two providers)
    // has several records; they are sorted together and summed under one name.
    bool first = true;
    for (std::size_t i = 0; i != count;) {
        std::uint64_t sum = 0;
        std::size_t j = i;
        for (; j != count && std::strcmp(calls[j].name, calls[i].name) == 0; ++j) sum += calls[j].calls;
        if (sum != 0) {
            if (!first) line.text(",");
            first = false;
            line.text("\"");
            line.text(calls[i].name);
            line.text("\":");
            line.number(sum);
        }
        i = j;
    }
    line.text("}");
    line.field("dequeue_calls", totals.dequeue_calls);
    line.field("completions", totals.completions);
}

void print_stats(const char* impl, const options& opts, const counters& c)
{
    platform::call_count calls[platform::max_counted_functions];
    const platform::call_totals totals = platform::read_calls(calls);
    const std::size_t count = totals.functions;
    std::sort(calls, calls + count, [](const platform::call_count& a, const platform::call_count& b) {
        return std::strcmp(a.name, b.name) < 0;
    });

    static line_writer line;
    line.text("{\"impl\":\"");
    line.text(impl);
    line.text("\",\"mode\":\"");
    line.text(mode_name(opts.mode));
    line.text("\"");
    line.field("accepted", c.accepted.load(std::memory_order_relaxed));
    line.text(",\"open\":");
    line.signed_number(c.open.load(std::memory_order_relaxed));
    // RACE: other threads allocate while this reads (a session's frame as its connection is
    // accepted). live first, then the totals, which only grow: a block allocated between the
    // reads then counts in alloc_bytes and not in live_bytes, never the other way round, and
    // alloc_bytes >= live_bytes holds in every line. (Read the other way round, a large
    // allocation in between can make live_bytes exceed alloc_bytes; a CI run's self-test saw it.)
    const std::int64_t live = allocations.live.load(std::memory_order_acquire);
    const std::uint64_t frees = allocations.frees.load(std::memory_order_relaxed);
    const std::uint64_t allocs = allocations.allocs.load(std::memory_order_relaxed);
    const std::uint64_t bytes = allocations.bytes.load(std::memory_order_relaxed);
    line.field("allocs", allocs);
    line.field("frees", frees);
    line.field("alloc_bytes", bytes);
    line.text(",\"live_bytes\":");
    line.signed_number(live);
    if (platform::counts_calls()) {
        print_calls(line, calls, count, totals);
    } else {
        // NOTE: null, not 0: nothing was counted (harness_linux.cpp says why).
        line.text(",\"win32_calls\":null,\"calls\":null,\"dequeue_calls\":null,\"completions\":null");
    }
    line.field("pool_bytes", receive_pool().buffers() * receive_buffer_size);
    line.text("}\n");
    line.flush();
}

[[nodiscard]] std::string_view trim(std::string_view s)
{
    const auto space = [](char ch) { return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n'; };
    while (!s.empty() && space(s.front())) s.remove_prefix(1);
    while (!s.empty() && space(s.back())) s.remove_suffix(1);
    return s;
}

} // namespace

options parse_options(int argc, char** argv)
{
    const char* program = argc > 0 ? argv[0] : "server";
    options result;
    for (int i = 1; i < argc; ++i) {
        const std::string_view flag = argv[i];
        if (flag == "--help" || flag == "-h") {
            std::printf("usage: %s --mode echo|packet|sink|fanout|download|echo-lean|packet-lean\n"
                        "       [--port N] [--threads N] [--file PATH]\n"
                        "       [--inline-budget N] [--port-check N] [--batch N] [--skip-on-success 0|1]\n"
                        "       [--idle-spin MICROSECONDS]\n"
                        "       [--transmit-part BYTES]  (portico)\n"
                        "       [--exit-after CONNECTIONS]\n",
                        program);
            std::exit(0);
        }
        if (i + 1 == argc) usage(program, "missing value");
        const char* value = argv[++i];
        if (flag == "--mode") {
            const std::string_view name = value;
            if (name == "echo") {
                result.mode = mode::echo;
            } else if (name == "packet") {
                result.mode = mode::packet;
            } else if (name == "sink") {
                result.mode = mode::sink;
            } else if (name == "fanout") {
                result.mode = mode::fanout;
            } else if (name == "download") {
                result.mode = mode::download;
            } else if (name == "echo-lean") {
                result.mode = mode::echo_lean;
            } else if (name == "packet-lean") {
                result.mode = mode::packet_lean;
            } else {
                usage(program, "--mode takes echo, packet, sink, fanout, download, echo-lean or packet-lean");
            }
        } else if (flag == "--port") {
            if (!parse_number<std::uint16_t>(value, 0, 65535, result.port)) usage(program, "--port takes 0..65535");
        } else if (flag == "--threads") {
            if (!parse_number<unsigned>(value, 1, 1024, result.threads)) usage(program, "--threads takes 1..1024");
        } else if (flag == "--file") {
            result.file = value;
        } else if (flag == "--inline-budget") {
            unsigned n = 0;
            if (!parse_number<unsigned>(value, 0, 1u << 20, n)) usage(program, "--inline-budget takes 0..1048576");
            result.inline_budget = n;
        } else if (flag == "--batch") {
            unsigned n = 0;
            if (!parse_number<unsigned>(value, 1, 4096, n)) usage(program, "--batch takes 1..4096");
            result.batch_size = n;
        } else if (flag == "--port-check") {
            unsigned n = 0;
            if (!parse_number<unsigned>(value, 1, 1u << 20, n)) usage(program, "--port-check takes 1..1048576");
            result.port_check_interval = n;
        } else if (flag == "--idle-spin") {
            unsigned n = 0;
            if (!parse_number<unsigned>(value, 0, 10'000'000, n)) usage(program, "--idle-spin takes 0..10000000");
            result.idle_spin_us = n;
        } else if (flag == "--skip-on-success") {
            unsigned n = 0;
            if (!parse_number<unsigned>(value, 0, 1, n)) usage(program, "--skip-on-success takes 0 or 1");
            result.skip_on_success = n == 1;
        } else if (flag == "--exit-after") {
            std::uint64_t n = 0;
            if (!parse_number<std::uint64_t>(value, 1, std::uint64_t{1} << 40, n)) {
                usage(program, "--exit-after takes 1..1099511627776");
            }
            result.exit_after = n;
            exit_after_closed.store(n, std::memory_order_relaxed);
        } else if (flag == "--transmit-part") {
            std::uint64_t n = 0;
            if (!parse_number<std::uint64_t>(value, 1, std::uint64_t{1} << 30, n)) {
                usage(program, "--transmit-part takes 1..1073741824");
            }
            result.transmit_part = n;
        } else {
            usage(program, "unknown option");
        }
    }
    if (result.mode == mode::download && result.file == nullptr) usage(program, "--mode download needs --file");
    return result;
}

void connection_closed(counters& c) noexcept
{
    c.open.fetch_sub(1, std::memory_order_relaxed);
    const std::uint64_t closed = c.closed.fetch_add(1, std::memory_order_relaxed) + 1;
    const std::uint64_t limit = exit_after_closed.load(std::memory_order_relaxed);
    if (limit != 0 && closed >= limit) {
        std::fflush(stdout);
        std::_Exit(0);
    }
}

void refuse_scheduling_knobs(const options& opts, const char* impl, bool spins_when_idle)
{
    if (opts.inline_budget || opts.batch_size || opts.skip_on_success || opts.port_check_interval ||
        opts.transmit_part) {
        std::fprintf(stderr,
                     "bench_%s: --inline-budget, --port-check, --batch, --skip-on-success and --transmit-part are "
                     "portico's\n",
                     impl);
        std::exit(2);
    }
    if (opts.idle_spin_us && !spins_when_idle) {
        std::fprintf(stderr, "bench_%s: --idle-spin is not implemented by this server\n", impl);
        std::exit(2);
    }
}

packet_scan scan_packets(const unsigned char* data, std::size_t size) noexcept
{
    packet_scan scan;
    while (size - scan.whole >= packet_header_size) {
        // Little-endian u16 size of the whole packet, header included.
        const std::size_t packet = data[scan.whole] | static_cast<std::size_t>(data[scan.whole + 1]) << 8;
        if (packet < packet_header_size) {
            scan.malformed = true;
            break;
        }
        if (size - scan.whole < packet) break;
        scan.whole += packet;
    }
    return scan;
}

buffer_pool::~buffer_pool()
{
    for (std::byte* buffer : free_) delete[] buffer;
}

std::byte* buffer_pool::borrow()
{
    {
        const std::lock_guard lock(mutex_);
        if (!free_.empty()) {
            std::byte* buffer = free_.back();
            free_.pop_back();
            return buffer;
        }
        // NOTE: room for every buffer in the free list, made here and not in
        // give_back(), which runs in destructors and completion paths.
        free_.reserve(buffers_ + 1);
        ++buffers_;
    }
    return new std::byte[receive_buffer_size];
}

void buffer_pool::give_back(std::byte* buffer) noexcept
{
    const std::lock_guard lock(mutex_);
    free_.push_back(buffer);
}

std::size_t buffer_pool::buffers() const noexcept
{
    const std::lock_guard lock(mutex_);
    return buffers_;
}

buffer_pool& receive_pool()
{
    static buffer_pool pool;
    return pool;
}

void start_counting()
{
    static bool started = false;
    if (started) return;
    started = true;
    platform::start_counting();
}

void print_listening(std::uint16_t port)
{
    platform::use_binary_stdout();
    std::printf("listening on 127.0.0.1:%u\n", static_cast<unsigned>(port));
    std::fflush(stdout);
}

void run_control(const char* impl, const options& opts, const counters& c)
{
    platform::use_binary_stdout();
    char buffer[256];
    while (std::fgets(buffer, sizeof buffer, stdin) != nullptr) {
        const std::string_view command = trim(buffer);
        if (command == "quit") return;
        if (command == "stats") {
            print_stats(impl, opts, c);
        } else if (!command.empty()) {
            std::fprintf(stderr, "unknown command: %.*s\n", static_cast<int>(command.size()), command.data());
        }
    }
}

} // namespace bench

// The replaceable global allocation functions, all of them, so that nothing the servers or
// their libraries allocate escapes the count.
void* operator new(std::size_t size) { return bench::allocate(size, bench::default_alignment); }
void* operator new[](std::size_t size) { return bench::allocate(size, bench::default_alignment); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept
{
    return bench::allocate_nothrow(size, bench::default_alignment);
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept
{
    return bench::allocate_nothrow(size, bench::default_alignment);
}
void* operator new(std::size_t size, std::align_val_t alignment)
{
    return bench::allocate(size, static_cast<std::size_t>(alignment));
}
void* operator new[](std::size_t size, std::align_val_t alignment)
{
    return bench::allocate(size, static_cast<std::size_t>(alignment));
}
void* operator new(std::size_t size, std::align_val_t alignment, const std::nothrow_t&) noexcept
{
    return bench::allocate_nothrow(size, static_cast<std::size_t>(alignment));
}
void* operator new[](std::size_t size, std::align_val_t alignment, const std::nothrow_t&) noexcept
{
    return bench::allocate_nothrow(size, static_cast<std::size_t>(alignment));
}

void operator delete(void* pointer) noexcept { bench::deallocate(pointer, bench::default_alignment); }
void operator delete[](void* pointer) noexcept { bench::deallocate(pointer, bench::default_alignment); }
void operator delete(void* pointer, const std::nothrow_t&) noexcept
{
    bench::deallocate(pointer, bench::default_alignment);
}
void operator delete[](void* pointer, const std::nothrow_t&) noexcept
{
    bench::deallocate(pointer, bench::default_alignment);
}
void operator delete(void* pointer, std::size_t) noexcept { bench::deallocate(pointer, bench::default_alignment); }
void operator delete[](void* pointer, std::size_t) noexcept { bench::deallocate(pointer, bench::default_alignment); }
void operator delete(void* pointer, std::align_val_t alignment) noexcept
{
    bench::deallocate(pointer, static_cast<std::size_t>(alignment));
}
void operator delete[](void* pointer, std::align_val_t alignment) noexcept
{
    bench::deallocate(pointer, static_cast<std::size_t>(alignment));
}
void operator delete(void* pointer, std::align_val_t alignment, const std::nothrow_t&) noexcept
{
    bench::deallocate(pointer, static_cast<std::size_t>(alignment));
}
void operator delete[](void* pointer, std::align_val_t alignment, const std::nothrow_t&) noexcept
{
    bench::deallocate(pointer, static_cast<std::size_t>(alignment));
}
void operator delete(void* pointer, std::size_t, std::align_val_t alignment) noexcept
{
    bench::deallocate(pointer, static_cast<std::size_t>(alignment));
}
void operator delete[](void* pointer, std::size_t, std::align_val_t alignment) noexcept
{
    bench::deallocate(pointer, static_cast<std::size_t>(alignment));
}
