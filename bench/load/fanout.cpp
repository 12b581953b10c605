#include "fanout.hpp"

#include "framed_stream.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cinttypes>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

namespace load {
namespace {

// fanout (the "fanout" server mode): --connections receivers and one sender,
// the last connection. The sender sends framed packets (framed_stream's
// bytes of its own stream); the server delivers each to every other
// connection, so every receiver must get the sender's stream, from the first
// packet that reached it on, byte for byte. The sender keeps at most --depth
// packets ahead of the slowest receiver, which bounds every queue in the
// server. Each delivery is timed from the send of its packet's first byte
// (one process, one clock: the send times stay in the client) to the receive
// of its last byte, and counted as one message.
class fanout_test final : public session {
public:
    fanout_test(const options& opts, const endpoint& server)
        : session(opts, server, opts.connections + 1), stream_(pattern_, opts.size), receivers_(opts.connections),
          at_next_(opts.depth + 1), send_times_(opts.depth), tx_(max_batch)
    {
        awaited_ = "delivery";
    }

    void run() override
    {
        connect_all();
        join();
        // The runner times its own window from here.
        std::fprintf(stderr, "joined: %zu receivers\n", open_count() - (sender().fd >= 0 ? 1 : 0));
        std::fflush(stderr);
        start_clock();
        run_until(measure_end_);
        measured_s_ = opts_.duration_s;
        drain();
    }

private:
    static constexpr std::size_t max_batch = 256 * 1024;
    static constexpr auto join_interval = std::chrono::milliseconds(1);
    // While no receiver has had a packet, the server delivers to no one (or
    // to sessions still on their way): a packet per this long at most, so
    // it is not buried under packets for an empty room.
    static constexpr auto join_pace = std::chrono::milliseconds(20);

    struct receiver {
        bool based = false;
        std::uint64_t base = 0; // the sequence number of the first packet that reached it
        std::uint64_t next = 0; // the first packet not yet complete
        // The start of the first packet, until its sequence number is in.
        std::array<std::uint8_t, framed_stream::full_head_size> head{};
        std::size_t head_bytes = 0;
    };

    connection& sender() noexcept { return connections_.back(); }
    bool is_sender(const connection& c) const noexcept { return c.id == opts_.connections; }

    // Packets whose first byte the kernel took.
    std::uint64_t packets_sent() noexcept
    {
        return (sender().sent + stream_.packet_size() - 1) / stream_.packet_size();
    }

    // A receiver's server session may join the room after its connect has
    // completed here, so it may miss the first packets. Packets go out one
    // at a time, each once every receiver that has had one has it all, until
    // every open receiver has had one and has every packet since: then the
    // window starts with all of them level.
    // NOTE: level, not merely joined: a receiver whose first packet is still
    // on its way while the others take the next ones can start far behind
    // them, beyond the window's count per packet.
    void join()
    {
        const auto deadline = clock_type::now() + response_timeout;
        auto last_send = time_point{};
        for (;;) {
            if (sender().fd < 0) return;
            bool waiting = false;
            bool any_based = false;
            bool settled = true;
            for (std::size_t i = 0; i < receivers_.size(); ++i) {
                if (connections_[i].fd < 0) continue;
                const receiver& r = receivers_[i];
                if (!r.based) {
                    waiting = true;
                    settled = settled && r.head_bytes == 0;
                } else {
                    any_based = true;
                    settled = settled && r.next == packets_sent();
                }
            }
            if (!waiting && settled) break;
            const auto now = clock_type::now();
            if (now >= deadline) {
                const auto limit = static_cast<long long>(response_timeout.count());
                for (std::size_t i = 0; i < receivers_.size(); ++i) {
                    if (connections_[i].fd < 0) continue;
                    const receiver& r = receivers_[i];
                    if (!r.based)
                        fail(connections_[i], failure::network, "no packet reached it in %lld s", limit);
                    else if (r.next != packets_sent())
                        fail(connections_[i], failure::network, "packet %" PRIu64 " did not reach it in %lld s", r.next,
                             limit);
                }
                break;
            }
            if (settled && (any_based || now - last_send >= join_pace) &&
                sender().sent == packets_sent() * stream_.packet_size()) {
                last_send = now;
                send_until((packets_sent() + 1) * stream_.packet_size());
            }
            poll(std::min(now + join_interval, deadline));
        }
        windowed_ = true;
        slowest_ = packets_sent();
        for (std::size_t i = 0; i < receivers_.size(); ++i) {
            if (connections_[i].fd < 0) continue;
            ++at(receivers_[i].next);
            slowest_ = std::min(slowest_, receivers_[i].next);
        }
        send_due();
    }

    // Sends nothing more and waits until every receiver has every packet: a
    // server that is still broadcasting this run's packets would send them to
    // the receivers of the next run.
    void drain()
    {
        draining_ = true;
        send_until(packets_sent() * stream_.packet_size()); // the rest of the packet begun
        const auto deadline = clock_type::now() + response_timeout;
        while (sender().fd >= 0 && slowest_ < packets_sent() && clock_type::now() < deadline) poll(deadline);
    }

    void on_connected(connection&) override {}

    void on_ready(connection& c, std::uint32_t events) override
    {
        if (is_sender(c)) {
            if ((events & readable_events) != 0 && receive(c) > 0) {
                fail(c, failure::data, "the sender was sent its own packets");
                return;
            }
            if ((events & EPOLLOUT) != 0) {
                if (windowed_)
                    send_due();
                else
                    send_until(packets_sent() * stream_.packet_size()); // the rest of the packet begun
            }
            return;
        }
        if ((events & readable_events) != 0) receive_packets(c, receivers_[c.id]);
    }

    void on_failure(connection& c) override
    {
        if (is_sender(c)) {
            describe_slowest();
            return;
        }
        if (!windowed_ || !receivers_[c.id].based) return;
        // The window no longer waits for it.
        --at(receivers_[c.id].next);
        if (receivers_[c.id].next == slowest_) advance_slowest();
    }

    // Where the window stands, for a sender that failed (a delivery that
    // timed out names the receiver it waited for).
    void describe_slowest()
    {
        std::fprintf(stderr, "load_client: the sender failed %s; %" PRIu64 " packets sent (%" PRIu64 " bytes)\n",
                     windowed_ ? "in the window" : "while joining", packets_sent(), sender().sent);
        if (!windowed_) return;
        for (std::size_t i = 0; i < receivers_.size(); ++i) {
            if (connections_[i].fd < 0 || receivers_[i].next != slowest_) continue;
            const std::uint64_t partial = connections_[i].received % stream_.packet_size();
            std::fprintf(stderr,
                         "load_client: the slowest receiver, connection %zu, waits for packet %" PRIu64
                         " and has %" PRIu64 " bytes of it\n",
                         i, slowest_, partial);
            return;
        }
        std::fprintf(stderr, "load_client: every receiver has every packet sent\n");
    }

    void receive_packets(connection& c, receiver& r)
    {
        for (;;) {
            const auto n = receive(c);
            if (n <= 0) return;
            const std::uint8_t* data = rx_.data();
            auto length = static_cast<std::size_t>(n);
            if (!r.based) {
                const std::size_t take = std::min(length, r.head.size() - r.head_bytes);
                std::memcpy(r.head.data() + r.head_bytes, data, take);
                r.head_bytes += take;
                data += take;
                length -= take;
                if (r.head_bytes == r.head.size() && !start(c, r)) return;
            }
            if (length > 0 && !accept(c, r, data, length)) return;
            if (static_cast<std::size_t>(n) < rx_.size()) return;
        }
    }

    // The first packet's head is in: its sequence number is where this
    // receiver's stream starts. False if c failed.
    bool start(connection& c, receiver& r)
    {
        std::uint64_t k = 0;
        for (std::size_t i = 0; i < sizeof k; ++i)
            k |= std::uint64_t{r.head[framed_stream::header_size + i]} << (8 * i);
        if (k >= packets_sent()) {
            fail(c, failure::data, "its first packet says it is packet %" PRIu64 ", which was not sent", k);
            return false;
        }
        r.based = true;
        r.base = r.next = k;
        return accept(c, r, r.head.data(), r.head.size());
    }

    // Checks data[0, length), the next bytes of c, against the sender's
    // stream and times the packets they complete. False if c failed.
    bool accept(connection& c, receiver& r, const std::uint8_t* data, std::size_t length)
    {
        const std::size_t packet_size = stream_.packet_size();
        const std::uint64_t offset = r.base * packet_size + c.received; // in the sender's stream
        if (offset + length > sender().sent) {
            fail(c, failure::data, "more bytes reached it than the sender sent");
            return false;
        }
        const std::size_t same = stream_.matching(sender().id, offset, data, length);
        if (same < length) {
            fail(c, failure::data, "packet %" PRIu64 ": its %s differs from what was sent",
                 (offset + same) / packet_size, stream_.field_at((offset + same) % packet_size));
            return false;
        }
        c.received += length;
        const std::uint64_t next = r.base + c.received / packet_size;
        if (next == r.next) return true;
        const auto now = clock_type::now();
        if (measuring(now)) {
            for (auto k = r.next; k < next; ++k) record(c, now - send_time(k), packet_size);
        }
        const std::uint64_t before = r.next;
        r.next = next;
        if (!windowed_) return true;
        --at(before);
        ++at(next);
        if (before == slowest_) advance_slowest();
        return true;
    }

    // How many open receivers have `next` at packet k, for k within the
    // window: between the slowest receiver's and the packets sent.
    std::uint32_t& at(std::uint64_t k) noexcept { return at_next_[k % at_next_.size()]; }

    // The slowest receiver may have moved on: finds it, and lets the
    // sender fill the window again.
    void advance_slowest()
    {
        const std::uint64_t sent = packets_sent();
        while (slowest_ < sent && at(slowest_) == 0) ++slowest_;
        sender().deadline = slowest_ < sent ? clock_type::now() + response_timeout : time_point::max();
        send_due();
    }

    // Sends every packet the window allows (once draining, only the rest of
    // the packet begun).
    void send_due()
    {
        const std::uint64_t packets = draining_ ? packets_sent() : slowest_ + opts_.depth;
        send_until(packets * stream_.packet_size());
    }

    // Sends the sender's stream up to byte `due`, batched into as few send
    // calls as the kernel allows.
    void send_until(std::uint64_t due)
    {
        connection& c = sender();
        if (c.fd < 0 || c.sent >= due) return;
        const std::size_t packet_size = stream_.packet_size();
        const auto now = clock_type::now();
        // join() has a deadline of its own.
        if (windowed_ && c.deadline == time_point::max()) c.deadline = now + response_timeout;
        while (c.sent < due) {
            const auto length = static_cast<std::size_t>(std::min<std::uint64_t>(due - c.sent, tx_.size()));
            std::size_t filled = 0;
            stream_.visit(c.id, c.sent, length, [&](const std::uint8_t* bytes, std::size_t n) {
                std::memcpy(tx_.data() + filled, bytes, n);
                filled += n;
                return true;
            });
            // NOTE: as in pipeline, a packet is timed from the batch its
            // first byte is in.
            for (auto k = (c.sent + packet_size - 1) / packet_size; k * packet_size < c.sent + length; ++k)
                send_time(k) = now;
            const auto n = send_some(c, tx_.data(), length);
            if (n < 0) return;
            c.sent += static_cast<std::size_t>(n);
            if (static_cast<std::size_t>(n) < length) return;
        }
    }

    // Packet k shares its slot with k + depth, which is not sent before
    // every receiver has k.
    time_point& send_time(std::uint64_t k) noexcept { return send_times_[k % send_times_.size()]; }

    const framed_stream stream_;
    std::vector<receiver> receivers_; // by connection id
    bool windowed_ = false;           // join() is over
    bool draining_ = false;           // the measured window is over
    std::uint64_t slowest_ = 0;       // the lowest `next` of the open receivers, once windowed_
    std::vector<std::uint32_t> at_next_;
    std::vector<time_point> send_times_;
    std::vector<std::uint8_t> tx_;
};

} // namespace

std::unique_ptr<session> make_fanout_session(const options& opts, const endpoint& server)
{
    return std::make_unique<fanout_test>(opts, server);
}

} // namespace load
