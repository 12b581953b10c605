#include "modes.hpp"

#include "fanout.hpp"
#include "framed_stream.hpp"

#include <algorithm>
#include <cinttypes>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

namespace load {
namespace {

// Round trips of one message at a time, each checked against what was sent:
// the base of pingpong, churn, burst and idle. Message k of connection c is
// --size bytes of the pattern from byte_pattern::start_of(c, k) on; with
// --framed, it is packet k of the connection's framed_stream (a 4-byte header
// and a --size byte body), for the servers' packet modes.
class message_session : public session {
public:
    message_session(const options& opts, const endpoint& server) : message_session(opts, server, opts.connections) {}
    message_session(const options& opts, const endpoint& server, std::size_t connection_count)
        : session(opts, server, connection_count), framed_(pattern_, opts.size),
          message_size_(opts.framed ? framed_.packet_size() : opts.size)
    {}

protected:
    // Bytes of a message, a packet's with its header.
    std::size_t message_size() const noexcept { return message_size_; }

    // Begins message c.seq + 1 and sends what the kernel takes of it now.
    void send_message(connection& c, time_point now)
    {
        ++c.seq;
        c.sent = 0;
        c.received = 0;
        c.waiting = true;
        c.deadline = now + response_timeout;
        flush(c);
    }

    // Sends what the kernel did not take of the current message before;
    // false if the connection failed.
    bool flush(connection& c)
    {
        if (!c.waiting || c.sent == message_size_) return true;
        if (!opts_.framed) {
            const auto n = send_some(c, pattern_.at(message_start(c)) + c.sent, message_size_ - c.sent);
            if (n < 0) return false;
            c.sent += static_cast<std::size_t>(n);
            return true;
        }
        bool ok = true;
        framed_.visit(c.id, packet_start(c) + c.sent, message_size_ - c.sent,
                      [&](const std::uint8_t* bytes, std::size_t n) {
                          const auto sent = send_some(c, bytes, n);
                          ok = sent >= 0;
                          if (ok) c.sent += static_cast<std::size_t>(sent);
                          return ok && static_cast<std::size_t>(sent) == n;
                      });
        return ok;
    }

    // Reads what has arrived; true once the whole echo of the current message
    // is in and equals the message.
    bool receive_echo(connection& c)
    {
        for (;;) {
            const auto n = receive(c);
            if (n <= 0) return false;
            const auto length = static_cast<std::size_t>(n);
            if (c.received + length > message_size_) {
                fail(c, failure::data, "message %" PRIu64 ": more than its %zu bytes came back", c.seq, message_size_);
                return false;
            }
            const auto same = opts_.framed ? framed_.matching(c.id, packet_start(c) + c.received, rx_.data(), length)
                                           : pattern_.matching(message_start(c) + c.received, rx_.data(), length);
            if (same < length) {
                fail(c, failure::data, "message %" PRIu64 ": byte %" PRIu64 " of the echo differs from the one sent",
                     c.seq, c.received + same);
                return false;
            }
            c.received += length;
            if (c.received == message_size_) {
                c.waiting = false;
                c.deadline = time_point::max();
                return true;
            }
            if (length < rx_.size()) return false;
        }
    }

    // The next step of an exchange on an edge: the rest of the message out,
    // then the echo in; true when the echo is complete.
    bool exchange(connection& c, std::uint32_t events)
    {
        if ((events & EPOLLOUT) != 0 && !flush(c)) return false;
        return (events & readable_events) != 0 && receive_echo(c);
    }

    // A ping: one message to a connection that is otherwise silent (idle, or
    // waiting for the others), whose answer the handler reports with
    // ping_done(), as does on_failure() for one that fails while waiting.
    void ping(connection& c)
    {
        ++pending_pings_;
        const auto now = clock_type::now();
        c.started = now;
        send_message(c, now);
    }
    void ping_done() noexcept { --pending_pings_; }
    std::size_t in_flight() const noexcept override { return pending_pings_; }

    // Pings the open connections of [first, last), at most max_connecting at
    // a time (thousands at once would wait longer than the response timeout
    // for a slow server), and waits for every answer.
    void ping_range(std::size_t first, std::size_t last)
    {
        for (std::size_t i = first; i < last; ++i) {
            while (pending_pings_ >= max_connecting) poll(time_point::max());
            if (connections_[i].fd >= 0) ping(connections_[i]);
        }
        settle();
    }

    // Waits until every ping is answered or its connection failed.
    void settle()
    {
        while (pending_pings_ > 0) poll(time_point::max());
    }

private:
    static std::uint64_t message_start(const connection& c) noexcept { return byte_pattern::start_of(c.id, c.seq); }
    // Where message c.seq (packet c.seq - 1) starts in the connection's framed stream.
    std::uint64_t packet_start(const connection& c) const noexcept { return (c.seq - 1) * message_size_; }

    const framed_stream framed_;
    const std::size_t message_size_;
    std::size_t pending_pings_ = 0; // pings not yet answered
};

// pingpong: each connection sends a message, waits for all of its echo and
// sends the next; timed from the send to the end of the echo.
// With --connect-first, every connection is connected and pinged once (one
// message, its echo checked, not timed: the server has accepted it and
// serves it) before the warm-up starts. With --idle-connections N (which
// implies it), N more connections (ids from --connections on) are opened and
// pinged first, then left silent while the active ones run; after the window
// each is pinged again, so one the server closed or stopped serving is an
// error. Pings are checked, not counted.
class pingpong_test final : public message_session {
public:
    pingpong_test(const options& opts, const endpoint& server)
        : message_session(opts, server, opts.connections + opts.idle_connections),
          connect_first_(opts.connect_first || opts.idle_connections > 0)
    {}

    void run() override
    {
        if (!connect_first_) {
            session::run();
            return;
        }
        connect_range(opts_.connections, connections_.size());
        settle();
        connect_range(0, opts_.connections);
        settle();
        const std::size_t open = open_count();
        const std::size_t idle_open = open - open_count_of(0, opts_.connections);
        // The runner times its own window from here.
        std::fprintf(stderr, "connected: %zu active, %zu idle\n", open - idle_open, idle_open);
        std::fflush(stderr);
        start_clock();
        started_ = true;
        const auto now = clock_type::now();
        for (std::size_t i = 0; i < opts_.connections; ++i) {
            if (connections_[i].fd >= 0) begin(connections_[i], now);
        }
        run_until(measure_end_);
        measured_s_ = opts_.duration_s;
        // The active ones carry on, untimed, while the idle ones are checked.
        ping_range(opts_.connections, connections_.size());
        close_all();
    }

private:
    bool is_idle(const connection& c) const noexcept { return c.id >= opts_.connections; }

    std::size_t open_count_of(std::size_t first, std::size_t last) const noexcept
    {
        std::size_t count = 0;
        for (std::size_t i = first; i < last; ++i) count += connections_[i].fd >= 0 ? 1 : 0;
        return count;
    }

    void begin(connection& c, time_point now)
    {
        c.started = now;
        send_message(c, now);
    }

    // A ping is a message that is checked but not timed: every message of
    // an idle connection, and the first of each connection before the start.
    bool pinging(const connection& c) const noexcept { return is_idle(c) || !started_; }

    void on_connected(connection& c) override
    {
        if (connect_first_ && pinging(c))
            ping(c);
        else
            begin(c, clock_type::now());
    }

    void on_ready(connection& c, std::uint32_t events) override
    {
        if (!c.waiting) {
            // Idle, or pinged and waiting for the others: nothing may come.
            if ((events & readable_events) != 0) fail(c, failure::network, "data or a close while silent");
            return;
        }
        if (!exchange(c, events)) return;
        if (connect_first_ && pinging(c)) {
            ping_done();
            return;
        }
        const auto now = clock_type::now();
        if (measuring(now)) record(c, now - c.started, message_size());
        begin(c, now);
    }

    void on_failure(connection& c) override
    {
        if (connect_first_ && pinging(c) && c.waiting) ping_done();
    }

    const bool connect_first_;
    bool started_ = false; // connect_first_: the active connections have begun
};

// pipeline: framed packets (the "packet" server mode), --depth of them in
// flight per connection, each timed from its send; the bytes of a connection's
// stream are framed_stream's.
class pipeline_test final : public session {
public:
    pipeline_test(const options& opts, const endpoint& server)
        : session(opts, server), stream_(pattern_, opts.size), send_times_(opts.connections * opts.depth),
          tx_(max_batch)
    {}

private:
    static constexpr std::size_t max_batch = 256 * 1024;

    void on_connected(connection& c) override { send_due(c); }

    void on_ready(connection& c, std::uint32_t events) override
    {
        if ((events & readable_events) != 0 && !receive_packets(c)) return;
        send_due(c);
    }

    // Sends every packet that may be in flight and is not yet sent, batched
    // into as few send calls as the kernel allows.
    void send_due(connection& c)
    {
        const std::size_t packet_size = stream_.packet_size();
        const std::uint64_t due = (c.received / packet_size + opts_.depth) * packet_size;
        if (c.sent >= due) return;
        const auto now = clock_type::now();
        while (c.sent < due) {
            const auto length = static_cast<std::size_t>(std::min<std::uint64_t>(due - c.sent, tx_.size()));
            std::size_t filled = 0;
            stream_.visit(c.id, c.sent, length, [&](const std::uint8_t* bytes, std::size_t n) {
                std::memcpy(tx_.data() + filled, bytes, n);
                filled += n;
                return true;
            });
            // NOTE: a packet is timed from the batch its first byte is in; if
            // the kernel does not take that byte, the next batch starts with
            // it and times it again.
            for (auto k = (c.sent + packet_size - 1) / packet_size; k * packet_size < c.sent + length; ++k)
                send_time(c, k) = now;
            const auto n = send_some(c, tx_.data(), length);
            if (n < 0) return;
            c.sent += static_cast<std::size_t>(n);
            if (static_cast<std::size_t>(n) < length) return;
        }
    }

    // Reads and checks what has arrived, and times each packet it completes;
    // false if the connection failed.
    bool receive_packets(connection& c)
    {
        const std::size_t packet_size = stream_.packet_size();
        for (;;) {
            const auto n = receive(c);
            if (n <= 0) return n == 0;
            const auto length = static_cast<std::size_t>(n);
            if (c.received + length > c.sent) {
                fail(c, failure::data, "more bytes came back than were sent");
                return false;
            }
            if (!check(c, length)) return false;
            const auto now = clock_type::now();
            const auto first = c.received / packet_size;
            c.received += length;
            if (measuring(now)) {
                for (auto k = first; k < c.received / packet_size; ++k) record(c, now - send_time(c, k), packet_size);
            }
            if (length < rx_.size()) return true;
        }
    }

    // Compares rx_[0, length) with the stream from c.received on.
    bool check(connection& c, std::size_t length)
    {
        const std::size_t same = stream_.matching(c.id, c.received, rx_.data(), length);
        if (same == length) return true;
        const std::uint64_t offset = c.received + same;
        fail(c, failure::data, "packet %" PRIu64 ": its %s differs from what was sent", offset / stream_.packet_size(),
             stream_.field_at(offset % stream_.packet_size()));
        return false;
    }

    // Packet k shares its slot with k + depth, which is not sent before k is back.
    time_point& send_time(const connection& c, std::uint64_t k) noexcept
    {
        return send_times_[c.id * opts_.depth + k % opts_.depth];
    }

    const framed_stream stream_;
    std::vector<time_point> send_times_;
    std::vector<std::uint8_t> tx_;
};

// bulk: --size byte chunks, as fast as the kernel takes them. Byte i of a
// connection's stream is the pattern's byte start_of(connection, 0) + i, so the
// echo (--direction both) is checked by its offset.
class bulk_test final : public session {
public:
    using session::session;

private:
    // Socket calls per turn before the other connections get theirs: a fast
    // server can keep one socket ready for ever.
    static constexpr int calls_per_turn = 16;

    bool both() const noexcept { return opts_.direction == bulk_direction::both; }

    void on_connected(connection& c) override { pump(c); }

    void on_ready(connection& c, std::uint32_t events) override
    {
        if ((events & readable_events) != 0) drain(c);
        if (c.fd >= 0 && (events & EPOLLOUT) != 0) pump(c);
    }

    void on_deferred(connection& c) override
    {
        if (c.fd >= 0) on_ready(c, both() ? EPOLLIN | EPOLLOUT : EPOLLOUT);
    }

    void pump(connection& c)
    {
        for (int call = 0; call < calls_per_turn; ++call) {
            const std::size_t rest = opts_.size - c.sent % opts_.size; // of the current chunk
            const auto n = send_some(c, pattern_.at(stream_start(c) + c.sent), rest);
            if (n < 0) return;
            const auto before = c.sent;
            c.sent += static_cast<std::size_t>(n);
            if (!both()) count(before, c.sent);
            if (static_cast<std::size_t>(n) < rest) return;
        }
        defer(c);
    }

    void drain(connection& c)
    {
        for (int call = 0; call < calls_per_turn; ++call) {
            const auto n = receive(c);
            if (n <= 0) return;
            const auto length = static_cast<std::size_t>(n);
            if (!both()) {
                fail(c, failure::data, "the sink sent data");
                return;
            }
            if (c.received + length > c.sent) {
                fail(c, failure::data, "more bytes came back than were sent");
                return;
            }
            const auto same = pattern_.matching(stream_start(c) + c.received, rx_.data(), length);
            if (same < length) {
                fail(c, failure::data, "byte %" PRIu64 " of the echo differs from the one sent", c.received + same);
                return;
            }
            const auto before = c.received;
            c.received += length;
            count(before, c.received);
            if (length < rx_.size()) return;
        }
        defer(c);
    }

    // Counts the stream bytes [before, after) and the chunks they complete.
    void count(std::uint64_t before, std::uint64_t after)
    {
        if (!measuring(clock_type::now())) return;
        bytes_ += after - before;
        messages_ += after / opts_.size - before / opts_.size;
    }

    static std::uint64_t stream_start(const connection& c) noexcept { return byte_pattern::start_of(c.id, 0); }
};

// churn: each connection slot loops: connect, one message, its echo, close;
// timed from the start of the connect.
class churn_test final : public message_session {
public:
    using message_session::message_session;

private:
    void on_connected(connection& c) override { send_message(c, clock_type::now()); }

    void on_ready(connection& c, std::uint32_t events) override
    {
        if (!exchange(c, events)) return;
        const auto now = clock_type::now();
        if (measuring(now)) record(c, now - c.started, message_size());
        close(c);
        open(c);
    }

    // The next cycle starts on the next round, so that a connect failing at
    // once does not recurse.
    void on_failure(connection& c) override { defer(c); }
    void on_deferred(connection& c) override { open(c); }
};

// burst: every connection connects at once, sends one message and waits for
// its echo, timed from the start of its connect; the burst lasts until the last
// one is done (echoed or failed), then all are closed. Bursts repeat until the
// measured window is over, and bursts that start in it are counted.
class burst_test final : public message_session {
public:
    using message_session::message_session;

    void run() override
    {
        start_clock();
        clock_type::duration measured{};
        bool measured_one = false;
        while (!measured_one || clock_type::now() < measure_end_) {
            const auto start = clock_type::now();
            counting_ = start >= measure_start_;
            pending_ = connections_.size();
            last_done_ = start;
            for (auto& c : connections_) open(c);
            while (pending_ > 0) poll(time_point::max());
            if (counting_) {
                measured += last_done_ - start;
                measured_one = true;
            }
            close_all();
        }
        measured_s_ = std::chrono::duration<double>(measured).count();
    }

private:
    void on_connected(connection& c) override { send_message(c, clock_type::now()); }

    void on_ready(connection& c, std::uint32_t events) override
    {
        if (!c.waiting) {
            // Done: it stays silent until the burst is over.
            if ((events & readable_events) != 0) fail(c, failure::network, "data or a close after the echo");
            return;
        }
        if (!exchange(c, events)) return;
        const auto now = clock_type::now();
        if (counting_) record(c, now - c.started, message_size());
        done(now);
    }

    void on_failure(connection& c) override
    {
        if (c.connecting || c.waiting) done(clock_type::now());
    }

    void done(time_point now)
    {
        --pending_;
        last_done_ = now;
    }

    std::size_t pending_ = 0; // connections of this burst not yet done
    time_point last_done_{};
    bool counting_ = false;
};

// idle: connections that are pinged once, left silent, and pinged again; each
// ping is timed.
class idle_test final : public message_session {
public:
    using message_session::message_session;

    void run() override
    {
        connect_all();
        settle();
        std::fprintf(stderr, "idle: %zu connected\n", open_count());
        std::fflush(stderr);
        const auto start = clock_type::now();
        if (opts_.hold_stdin) {
            watch_stdin();
            while (stdin_open()) poll(time_point::max());
        } else {
            run_until(start + seconds(opts_.duration_s));
        }
        measured_s_ = std::chrono::duration<double>(clock_type::now() - start).count();
        ping_range(0, connections_.size());
        close_all();
    }

private:
    void on_connected(connection& c) override { ping(c); }

    void on_ready(connection& c, std::uint32_t events) override
    {
        if (!c.waiting) {
            if ((events & readable_events) != 0) fail(c, failure::network, "data or a close while idle");
            return;
        }
        if (!exchange(c, events)) return;
        record(c, clock_type::now() - c.started, message_size());
        ping_done();
    }

    void on_failure(connection& c) override
    {
        if (c.waiting) ping_done();
    }
};

// download: each connection asks for the server's file ("GET ", the download
// server mode), reads it whole, --size bytes, each checked against the bytes
// the file was written with (load_client --write-file: byte i of the file is
// the pattern's byte i), then asks again; timed from the request to the last
// byte. Messages are files; bytes are counted as they arrive.
class download_test final : public session {
public:
    using session::session;

private:
    // Socket calls per turn before the other connections get theirs.
    static constexpr int calls_per_turn = 16;
    static constexpr char request_bytes[4] = {'G', 'E', 'T', ' '};

    void on_connected(connection& c) override { request(c, clock_type::now()); }

    void request(connection& c, time_point now)
    {
        c.started = now;
        c.received = 0;
        c.waiting = true;
        c.deadline = now + response_timeout;
        const auto n = send_some(c, request_bytes, sizeof request_bytes);
        // 4 bytes into an idle connection's empty send buffer: all or nothing.
        if (n >= 0 && static_cast<std::size_t>(n) < sizeof request_bytes) {
            fail(c, failure::network, "the kernel took %zd of the 4 request bytes", n);
        }
    }

    void on_ready(connection& c, std::uint32_t events) override
    {
        if ((events & readable_events) != 0) drain(c);
    }

    void on_deferred(connection& c) override
    {
        if (c.fd >= 0) drain(c);
    }

    void drain(connection& c)
    {
        for (int call = 0; call < calls_per_turn; ++call) {
            const auto n = receive(c);
            if (n <= 0) return;
            const auto length = static_cast<std::size_t>(n);
            if (!c.waiting || c.received + length > opts_.size) {
                fail(c, failure::data, "more than the file's %zu bytes came", opts_.size);
                return;
            }
            const auto same = pattern_.matching(c.received, rx_.data(), length);
            if (same < length) {
                fail(c, failure::data, "byte %" PRIu64 " of the file differs", c.received + same);
                return;
            }
            c.received += length;
            const auto now = clock_type::now();
            c.deadline = now + response_timeout; // progress: a large file may take long
            // Bytes count as they arrive, so a window that holds few files
            // still measures the speed exactly; a file counts when it is whole.
            if (measuring(now)) bytes_ += length;
            if (c.received == opts_.size) {
                if (measuring(now)) record(c, now - c.started, 0);
                request(c, now);
                return;
            }
            if (length < rx_.size()) return;
        }
        defer(c);
    }
};

} // namespace

std::unique_ptr<session> make_session(const options& opts, const endpoint& server)
{
    switch (opts.mode) {
    case test_mode::pingpong: return std::make_unique<pingpong_test>(opts, server);
    case test_mode::pipeline: return std::make_unique<pipeline_test>(opts, server);
    case test_mode::bulk: return std::make_unique<bulk_test>(opts, server);
    case test_mode::churn: return std::make_unique<churn_test>(opts, server);
    case test_mode::burst: return std::make_unique<burst_test>(opts, server);
    case test_mode::idle: return std::make_unique<idle_test>(opts, server);
    case test_mode::fanout: return make_fanout_session(opts, server);
    case test_mode::download: return std::make_unique<download_test>(opts, server);
    }
    return nullptr;
}

} // namespace load
