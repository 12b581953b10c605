// What every load pattern shares: connections on one edge-triggered epoll
// loop, timeouts, the measured window, counters and error reports.
#pragma once

#include "byte_pattern.hpp"
#include "histogram.hpp"
#include "options.hpp"

#include <sys/epoll.h>
#include <sys/socket.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace load {

using clock_type = std::chrono::steady_clock; // CLOCK_MONOTONIC
using time_point = clock_type::time_point;

// A connect, or the echo of a message, that takes longer fails its connection.
inline constexpr std::chrono::seconds response_timeout{10};
// Failures described on stderr; the rest are only counted.
inline constexpr std::uint64_t reported_errors = 10;
// The events after which reading may find data or the end of the stream.
inline constexpr std::uint32_t readable_events = EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP;
// Connects in flight at once when connecting many (connect_range).
inline constexpr std::size_t max_connecting = 256;

// The server's address, resolved once.
struct endpoint {
    sockaddr_storage address{};
    socklen_t size = 0;
};

struct connection {
    int fd = -1;
    std::uint32_t id = 0;         // index in the session: picks its bytes, names it in reports
    std::uint32_t generation = 0; // counts its sockets, so an event for an earlier one is recognised
    bool connecting = false;
    bool waiting = false;  // message modes: a message is out and its echo not yet complete
    bool deferred = false; // in the list of connections that get another turn after this round
    time_point started{};  // when the interval being timed began
    time_point deadline = time_point::max();
    std::uint64_t seq = 0;      // message modes: messages begun
    std::uint64_t sent = 0;     // bytes the kernel took: of the current message, or of the whole stream
    std::uint64_t received = 0; // bytes received and checked, counted the same way
};

// What went wrong with a connection: the network side (refused, reset,
// closed, timed out), or bytes that came back differ from those sent. A burst
// expects the first kind under overload; the second is always a bug.
enum class failure { network, data };

class session {
public:
    // One connection per --connections.
    session(const options& opts, const endpoint& server);
    virtual ~session();
    session(const session&) = delete;
    session& operator=(const session&) = delete;

    // Runs the test to its end; the results below are then final. By
    // default: opens every connection at once, each starts its traffic when
    // connected (on_connected), until the measured window ends.
    virtual void run();

    double measured_s() const noexcept { return measured_s_; }
    std::uint64_t messages() const noexcept { return messages_; }
    std::uint64_t bytes() const noexcept { return bytes_; }
    std::uint64_t errors() const noexcept { return errors_; }
    std::uint64_t data_errors() const noexcept { return data_errors_; }
    const latency_histogram& rtt() const noexcept { return rtt_; }

    // The medians of the connections' own times: the largest, the smallest,
    // and how many connections timed anything (zeros if none did).
    struct connection_medians {
        double worst_us = 0;
        double best_us = 0;
        std::size_t connections = 0;
    };
    connection_medians medians() const noexcept;

protected:
    // `connection_count` connections instead of one per --connections.
    session(const options& opts, const endpoint& server, std::size_t connection_count);

    // The connect that open() started has completed.
    virtual void on_connected(connection& c) = 0;
    // An edge-triggered event on a connected socket: the handler must read (or
    // write) until the kernel has no more (or takes no more), or defer().
    virtual void on_ready(connection& c, std::uint32_t events) = 0;
    // The turn that defer() asked for.
    virtual void on_deferred(connection&) {}
    // c failed; called before it is closed, so its state still says what it was doing.
    virtual void on_failure(connection&) {}

    // Starts a non-blocking connect on c, timed from now; on_connected() or a
    // failure follows.
    void open(connection& c);
    void close(connection& c) noexcept;
    void close_all() noexcept;
    // Counts the failure, describes it on stderr (the first few), closes c.
    [[gnu::format(printf, 4, 5)]] void fail(connection& c, failure kind, const char* format, ...);

    // Sends from data; returns the bytes the kernel took, or -1 if c failed.
    // NOTE: taking fewer than n means the socket buffer is full, and an
    // EPOLLOUT edge comes when it has room again (epoll(7)).
    std::ptrdiff_t send_some(connection& c, const void* data, std::size_t n);
    // Receives into rx_; returns the byte count, 0 if nothing is waiting, or
    // -1 if c failed or the server closed it.
    // NOTE: fewer than rx_.size() bytes means the socket has no more for now,
    // and an EPOLLIN edge comes with the next data (epoll(7)).
    std::ptrdiff_t receive(connection& c);

    // Gives c another on_deferred() turn after this round of events: for a
    // handler that stops early to let other connections have their turn, or
    // that must not recurse into open().
    void defer(connection& c);
    // One round: waits for events until `until` (at most 100 ms), hands them
    // out, runs deferred turns, fails connections past their deadline.
    void poll(time_point until);
    void run_until(time_point end);
    // Opens every connection; returns when each is connected or failed.
    void connect_all() { connect_range(0, connections_.size()); }
    // Opens connections [first, last), at most max_connecting at a time
    // (with in_flight() counted against it), so that thousands do not
    // overflow the server's accept backlog (a dropped SYN is retried only
    // after a second); returns when each is connected or failed.
    void connect_range(std::size_t first, std::size_t last);
    // What else a connection being set up waits for (a first exchange): counted
    // with the connects in flight by connect_range.
    virtual std::size_t in_flight() const noexcept { return 0; }
    std::size_t open_count() const noexcept;

    // Watches stdin for its end, which stdin_open() then reports.
    void watch_stdin();
    bool stdin_open() const noexcept { return stdin_open_; }

    // Sets the window: --warmup seconds from now, then --duration seconds.
    void start_clock();
    bool measuring(time_point t) const noexcept { return t >= measure_start_ && t < measure_end_; }
    // Counts one completed message of connection c, timed `rtt`.
    void record(const connection& c, std::chrono::nanoseconds rtt, std::uint64_t bytes)
    {
        ++messages_;
        bytes_ += bytes;
        rtt_.record(rtt);
        auto& own = by_connection_[c.id];
        if (!own) own = std::make_unique<connection_histogram>();
        own->record(rtt);
    }

    const options& opts_;
    const byte_pattern pattern_;
    std::vector<connection> connections_;
    // What receive() read; checked and dropped at once, so one buffer serves all connections.
    std::vector<std::uint8_t> rx_;
    time_point measure_start_{};
    time_point measure_end_{};
    double measured_s_ = 0;
    std::uint64_t messages_ = 0;
    std::uint64_t bytes_ = 0;
    // What a connection past its deadline was waiting for, in the report.
    const char* awaited_ = "echo";

private:
    void dispatch(const epoll_event& event);
    void finish_connect(connection& c, std::uint32_t events);
    void read_stdin();
    void expire(time_point now);

    int epoll_fd_ = -1;
    endpoint server_;
    std::size_t connecting_ = 0;
    std::vector<std::uint32_t> deferred_;
    std::vector<std::uint32_t> resuming_;
    time_point next_expiry_{};
    bool stdin_open_ = false;
    latency_histogram rtt_;
    // Each connection's times, indexed by id; null until it records one.
    std::vector<std::unique_ptr<connection_histogram>> by_connection_;
    std::uint64_t errors_ = 0;
    std::uint64_t data_errors_ = 0;
};

// Converts --duration and --warmup seconds.
inline clock_type::duration seconds(double s)
{
    return std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(s));
}

} // namespace load
