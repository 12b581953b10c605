#include "session.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <system_error>

namespace load {
namespace {

// The epoll data of stdin; a connection's is its generation and id.
constexpr std::uint64_t stdin_tag = ~std::uint64_t{0};
constexpr std::size_t receive_buffer_size = 256 * 1024;
constexpr auto expiry_interval = std::chrono::milliseconds(100);
constexpr int max_events = 256;

std::uint64_t tag_of(const connection& c) noexcept { return (std::uint64_t{c.generation} << 32) | c.id; }

[[noreturn]] void throw_errno(const char* what) { throw std::system_error(errno, std::generic_category(), what); }

} // namespace

session::session(const options& opts, const endpoint& server) : session(opts, server, opts.connections) {}

session::session(const options& opts, const endpoint& server, std::size_t connection_count)
    : opts_(opts), pattern_(opts.seed, opts.size), connections_(connection_count), rx_(receive_buffer_size),
      server_(server), by_connection_(connection_count)
{
    for (std::size_t i = 0; i < connections_.size(); ++i) connections_[i].id = static_cast<std::uint32_t>(i);
    // Each connection is in the list at most once, so these never reallocate.
    deferred_.reserve(connections_.size());
    resuming_.reserve(connections_.size());
    epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd_ < 0) throw_errno("epoll_create1");
}

session::~session()
{
    close_all();
    ::close(epoll_fd_);
}

void session::run()
{
    start_clock();
    for (auto& c : connections_) open(c);
    run_until(measure_end_);
    measured_s_ = opts_.duration_s;
}

session::connection_medians session::medians() const noexcept
{
    connection_medians m;
    for (const auto& own : by_connection_) {
        if (!own) continue;
        const double median = own->quantile_us(500);
        m.worst_us = m.connections == 0 ? median : std::max(m.worst_us, median);
        m.best_us = m.connections == 0 ? median : std::min(m.best_us, median);
        ++m.connections;
    }
    return m;
}

void session::open(connection& c)
{
    const auto now = clock_type::now();
    ++c.generation;
    c.started = now;
    c.deadline = now + response_timeout;
    c.sent = 0;
    c.received = 0;
    // Connecting from here on, so that even a failing socket() is a failed connect to the hooks.
    c.connecting = true;
    ++connecting_;
    c.fd = ::socket(server_.address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.fd < 0) {
        fail(c, failure::network, "socket: %s", std::strerror(errno));
        return;
    }
    const int on = 1;
    ::setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    if (::connect(c.fd, reinterpret_cast<const sockaddr*>(&server_.address), server_.size) != 0 &&
        errno != EINPROGRESS) {
        fail(c, failure::network, "connect: %s", std::strerror(errno));
        return;
    }
    // NOTE: registered only after connect(): an unconnected socket would be
    // reported at once (EPOLLHUP). A connect that completes before epoll_ctl
    // is not missed: adding a socket that is already writable reports it.
    epoll_event event{};
    event.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    event.data.u64 = tag_of(c);
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, c.fd, &event) != 0)
        fail(c, failure::network, "epoll_ctl: %s", std::strerror(errno));
}

void session::close(connection& c) noexcept
{
    if (c.connecting) {
        c.connecting = false;
        --connecting_;
    }
    if (c.fd >= 0) {
        ::close(c.fd); // also leaves the epoll set: nothing else refers to the socket
        c.fd = -1;
    }
    c.waiting = false;
    c.deadline = time_point::max();
}

void session::close_all() noexcept
{
    for (auto& c : connections_) close(c);
}

void session::fail(connection& c, failure kind, const char* format, ...)
{
    ++errors_;
    if (kind == failure::data) ++data_errors_;
    if (errors_ <= reported_errors) {
        std::fprintf(stderr, "load_client: connection %u: ", c.id);
        va_list args;
        va_start(args, format);
        std::vfprintf(stderr, format, args);
        va_end(args);
        std::fputc('\n', stderr);
    }
    on_failure(c);
    close(c);
}

std::ptrdiff_t session::send_some(connection& c, const void* data, std::size_t n)
{
    const auto sent = ::send(c.fd, data, n, MSG_NOSIGNAL);
    if (sent >= 0) return sent;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    fail(c, failure::network, "send: %s", std::strerror(errno));
    return -1;
}

std::ptrdiff_t session::receive(connection& c)
{
    const auto n = ::recv(c.fd, rx_.data(), rx_.size(), 0);
    if (n > 0) return n;
    if (n == 0) {
        fail(c, failure::network, "the server closed the connection");
        return -1;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    fail(c, failure::network, "recv: %s", std::strerror(errno));
    return -1;
}

void session::defer(connection& c)
{
    if (c.deferred) return;
    c.deferred = true;
    deferred_.push_back(c.id);
}

void session::poll(time_point until)
{
    int timeout_ms = 0;
    if (deferred_.empty()) {
        const auto wait = std::min(until, next_expiry_) - clock_type::now();
        timeout_ms =
            static_cast<int>(std::max<std::int64_t>(0, std::chrono::ceil<std::chrono::milliseconds>(wait).count()));
    }
    epoll_event events[max_events];
    const int n = ::epoll_wait(epoll_fd_, events, max_events, timeout_ms);
    if (n < 0 && errno != EINTR) throw_errno("epoll_wait");
    for (int i = 0; i < n; ++i) dispatch(events[i]);

    resuming_.swap(deferred_);
    for (const auto id : resuming_) {
        connections_[id].deferred = false;
        on_deferred(connections_[id]);
    }
    resuming_.clear();

    const auto now = clock_type::now();
    if (now >= next_expiry_) {
        expire(now);
        next_expiry_ = now + expiry_interval;
    }
}

void session::run_until(time_point end)
{
    while (clock_type::now() < end) poll(end);
}

void session::connect_range(std::size_t first, std::size_t last)
{
    std::size_t next = first;
    while (next < last || connecting_ > 0) {
        while (next < last && connecting_ + in_flight() < max_connecting) open(connections_[next++]);
        poll(time_point::max());
    }
}

std::size_t session::open_count() const noexcept
{
    std::size_t count = 0;
    for (const auto& c : connections_) count += c.fd >= 0 ? 1 : 0;
    return count;
}

void session::watch_stdin()
{
    stdin_open_ = true;
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.u64 = stdin_tag;
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, STDIN_FILENO, &event) == 0) return;
    if (errno != EPERM) throw_errno("epoll_ctl(stdin)");
    // A regular file or /dev/null cannot be watched, but is read to its end without waiting.
    while (stdin_open_) read_stdin();
}

void session::read_stdin()
{
    // Only the end of the input matters, not what it says.
    char discarded[4096];
    const auto n = ::read(STDIN_FILENO, discarded, sizeof discarded);
    if (n > 0 || (n < 0 && (errno == EINTR || errno == EAGAIN))) return;
    stdin_open_ = false;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, STDIN_FILENO, nullptr);
}

void session::start_clock()
{
    measure_start_ = clock_type::now() + seconds(opts_.warmup_s);
    measure_end_ = measure_start_ + seconds(opts_.duration_s);
}

void session::dispatch(const epoll_event& event)
{
    const std::uint64_t tag = event.data.u64;
    if (tag == stdin_tag) {
        read_stdin();
        return;
    }
    connection& c = connections_[static_cast<std::uint32_t>(tag)];
    // NOTE: a round's events are all collected before the first is handled; if
    // a handler has since closed this slot's socket, or closed it and opened
    // another, the event is stale.
    if (c.fd < 0 || tag != tag_of(c)) return;
    if (c.connecting)
        finish_connect(c, event.events);
    else
        on_ready(c, event.events);
}

void session::finish_connect(connection& c, std::uint32_t events)
{
    // A failed connect reports EPOLLERR; only then is SO_ERROR worth a call.
    if ((events & (EPOLLERR | EPOLLHUP)) != 0) {
        int error = 0;
        socklen_t size = sizeof error;
        ::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &error, &size);
        fail(c, failure::network, "connect: %s", error != 0 ? std::strerror(error) : "closed at once");
        return;
    }
    if ((events & EPOLLOUT) == 0) return;
    c.connecting = false;
    --connecting_;
    c.deadline = time_point::max();
    on_connected(c);
    // The same edge may already carry data; it would not be reported again.
    if (c.fd >= 0 && !c.connecting && (events & readable_events) != 0) on_ready(c, events);
}

void session::expire(time_point now)
{
    for (auto& c : connections_) {
        if (c.fd < 0 || now < c.deadline) continue;
        fail(c, failure::network, "%s timed out after %lld s", c.connecting ? "connect" : awaited_,
             static_cast<long long>(response_timeout.count()));
    }
}

} // namespace load
