// portico: send_queue — the sans-I/O queue behind packet_stream's
// write_packet: admission against watermarks, gathering pending packets into
// one write, and accounting for what the write took.
#pragma once

#include <portico/buffer.hpp>
#include <portico/config.hpp>
#include <portico/error.hpp>

#include <array>
#include <atomic>
#include <cassert>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <span>
#include <system_error>

PORTICO_NAMESPACE_BEGIN

/// What write_packet does with a packet that would take the send queue past
/// its high watermark.
enum class overflow_policy : unsigned char {
    /// The writer waits (suspended) until the queue has drained to the low
    /// watermark and its packet fits; writers are admitted in arrival order.
    suspend,
    /// write_packet fails at once with send_queue_full; nothing of the packet
    /// is sent and the stream stays open.
    fail,
    /// The stream is closed with send_queue_full: every pending and later
    /// operation on it fails with that error. For cutting off a slow consumer
    /// (a client that stopped reading) without slowing its writers down.
    disconnect,
};

/// Watermarks of a send queue, in bytes of packets (headers included)
/// accepted by write_packet and not yet taken by the kernel.
struct send_queue_limits {
    /// A packet is accepted while the queue stays at or under this many
    /// bytes with it; a packet larger than the watermark is accepted only
    /// into an empty queue. So the queue never holds more than the larger of
    /// this and one packet.
    std::size_t high_watermark = 1024 * 1024;
    /// With the suspend policy: waiting writers are admitted again once the
    /// queue has drained to this many bytes (hysteresis, so writers wake in
    /// batches rather than one packet at a time).
    std::size_t low_watermark = 256 * 1024;
    /// What happens to a packet that does not fit.
    overflow_policy policy = overflow_policy::suspend;
};

namespace detail {

/// The largest header a packet_format can describe (4-byte size, 4-byte type).
inline constexpr std::size_t max_header_size = 8;

/// The most buffers one write takes: one WSASend gathers up to 64.
inline constexpr std::size_t max_gather_buffers = 64;

/// One packet handed to write_packet: it lives in the writer's awaiter, so
/// queuing it allocates nothing. The list links, `sent`, `gathered` and
/// `place` belong to the queue (guarded by its owner's lock); `state` is the
/// handshake between the writer and whoever finishes the node.
struct send_node {
    /// The writer is still inside await_suspend / has suspended / the node is
    /// finished. Whoever moves it from `waiting` to `done` resumes the writer;
    /// a writer that finds `done` continues without suspending.
    enum class status : unsigned char { starting, waiting, done };
    enum class where : unsigned char { none, queued, blocked };

    send_node* next = nullptr;
    send_node* prev = nullptr;
    std::array<std::byte, max_header_size> header{};
    std::size_t header_size = 0;
    std::span<const const_buffer> body;
    /// Header plus body.
    std::size_t size = 0;
    /// Bytes taken by the kernel so far.
    std::size_t sent = 0;
    /// Some of its bytes are part of the write in flight: it cannot be
    /// withdrawn any more.
    bool gathered = false;
    where place = where::none;
    /// An outbox_block: the queue's own, with no writer to finish.
    bool owned = false;
    std::error_code result;
    std::coroutine_handle<> waiter;
    std::atomic<status> state{status::starting};
};

/// Packets copied into the queue (packet_stream::queue_packet): a node the
/// queue owns whose body is its own storage. Copies fill the block at the
/// queue's tail before a new one is started, so a burst of small packets
/// leaves as one buffer of one write.
struct outbox_block : send_node {
    static constexpr std::size_t capacity = 4096;

    outbox_block() noexcept
    {
        owned = true;
        body = std::span<const const_buffer>(&filled, 1);
    }
    outbox_block(const outbox_block&) = delete;
    outbox_block& operator=(const outbox_block&) = delete;

    [[nodiscard]] std::size_t room() const noexcept { return capacity - size; }

    /// The stored bytes, as the node's one body buffer.
    const_buffer filled;
    outbox_block* next_free = nullptr;
    std::array<std::byte, capacity> storage;
};

/// Finished nodes whose writers are suspended, to be resumed once the lock
/// is released (a resumed writer may call back into the stream).
class resume_list {
public:
    /// Records the outcome and finishes the node. If its writer has already
    /// suspended, it is kept here to be resumed by resume_all(); otherwise the
    /// writer, still in await_suspend, sees `done` and carries on itself, and
    /// the node must not be touched again.
    void finish(send_node& n, std::error_code ec) noexcept
    {
        n.result = ec;
        n.place = send_node::where::none;
        // RACE: the exchange publishes `result`; if the writer was still
        // starting, it may destroy the node the moment this returns.
        if (n.state.exchange(send_node::status::done, std::memory_order_acq_rel) == send_node::status::waiting) {
            n.next = nullptr;
            if (tail_ == nullptr) {
                head_ = &n;
            } else {
                tail_->next = &n;
            }
            tail_ = &n;
        }
    }

    /// Resumes every kept writer, in finishing order, on this thread.
    void resume_all() noexcept
    {
        for (send_node* n = head_; n != nullptr;) {
            // A resumed writer may destroy its node: read the link first.
            send_node* next = n->next;
            n->waiter.resume();
            n = next;
        }
        head_ = tail_ = nullptr;
    }

private:
    send_node* head_ = nullptr;
    send_node* tail_ = nullptr;
};

} // namespace detail

/// The accounting of a coalescing send queue, without I/O or locking: the
/// owner (packet_stream) holds a lock around every call.
///
/// Packets are admitted into the queue (or held back, with the suspend
/// policy) by admit(); gather() lists the bytes of the queued packets, in
/// order, as at most 64 buffers for one gather write; consume() accounts for
/// the bytes the write took and finishes the packets it completed. The owner
/// keeps one write in flight at a time and every gather starts where the
/// last write stopped, so the bytes leave in queue order and two packets
/// never interleave.
/// Thread safety: none (the owner's lock).
class send_queue {
public:
    /// How admit() placed a packet.
    enum class admission : unsigned char {
        /// In the queue: it will be gathered.
        queued,
        /// Held back by the suspend policy until the queue drains.
        blocked,
        /// Over the high watermark with the fail or disconnect policy; the
        /// node is not in the queue.
        refused,
        /// append_copy() could not allocate a block; nothing was queued.
        out_of_memory,
    };

    /// An empty queue that admits packets within `limits`. Allocates nothing.
    explicit send_queue(send_queue_limits limits = {}) noexcept : limits_(limits) {}

    send_queue(const send_queue&) = delete;
    send_queue& operator=(const send_queue&) = delete;

    /// Frees the blocks it owns. Writers' nodes still queued are neither
    /// finished nor touched, unless blocks are queued too: then the queue is
    /// walked, and every node in it must still exist (packet_stream's are:
    /// its writers keep the queue's owner alive while they wait).
    ~send_queue()
    {
        for (detail::send_node* n = queued_.head; n != nullptr && blocks_queued_ != 0;) {
            detail::send_node* next = n->next;
            if (n->owned) {
                delete static_cast<detail::outbox_block*>(n);
                --blocks_queued_;
            }
            n = next;
        }
        while (free_blocks_ != nullptr) delete std::exchange(free_blocks_, free_blocks_->next_free);
    }

    /// The limits given at construction.
    [[nodiscard]] const send_queue_limits& limits() const noexcept { return limits_; }

    /// Bytes of admitted packets not yet taken by the kernel.
    [[nodiscard]] std::size_t queued_bytes() const noexcept { return queued_bytes_; }
    /// The most queued_bytes() has ever been.
    [[nodiscard]] std::size_t peak_queued_bytes() const noexcept { return peak_bytes_; }
    /// Packets held back by the suspend policy.
    [[nodiscard]] std::size_t blocked_packets() const noexcept { return blocked_count_; }
    /// True if queued bytes are waiting to be gathered.
    [[nodiscard]] bool has_unsent() const noexcept { return queued_.head != nullptr; }

    /// Admits `n` (size set, not in any list). A packet that arrives while
    /// others are held back queues behind them, so admission keeps arrival
    /// order.
    admission admit(detail::send_node& n) noexcept
    {
        assert(n.place == detail::send_node::where::none);
        if (blocked_.head == nullptr && fits(n.size)) {
            enqueue(n);
            return admission::queued;
        }
        if (limits_.policy != overflow_policy::suspend) return admission::refused;
        blocked_.push_back(n);
        n.place = detail::send_node::where::blocked;
        ++blocked_count_;
        return admission::blocked;
    }

    /// Copies a packet of `size` bytes (`header`, then `body`) onto the tail
    /// of the queue, into blocks the queue owns (kept for reuse once sent,
    /// up to kept_blocks of them). Refused like admit() when it does not fit
    /// under the high watermark, and also while writers are held back: a
    /// copy cannot wait behind them, and may not overtake them.
    admission append_copy(std::span<const std::byte> header, std::span<const const_buffer> body,
                          std::size_t size) noexcept
    {
        if (blocked_.head != nullptr || !fits(size)) return admission::refused;
        // Every block needed is in hand before any byte is copied: running
        // out of memory halfway would leave half a packet queued.
        detail::outbox_block* tail = tail_block();
        const std::size_t in_tail = tail != nullptr ? (std::min)(tail->room(), size) : 0;
        std::size_t needed = (size - in_tail + detail::outbox_block::capacity - 1) / detail::outbox_block::capacity;
        detail::outbox_block* fresh = nullptr;
        for (; needed != 0; --needed) {
            detail::outbox_block* b = take_block();
            if (b == nullptr) {
                while (fresh != nullptr) recycle(*std::exchange(fresh, fresh->next_free));
                return admission::out_of_memory;
            }
            b->next_free = fresh;
            fresh = b;
        }
        const auto copy = [&](const std::byte* bytes, std::size_t length) noexcept {
            while (length != 0) {
                detail::outbox_block* b = tail_block();
                if (b == nullptr || b->room() == 0) {
                    b = std::exchange(fresh, fresh->next_free);
                    enqueue(*b);
                    ++blocks_queued_;
                }
                const std::size_t take = (std::min)(length, b->room());
                // NOTE: the block may be part of the write in flight; that
                // write covers only the bytes gathered before, and these land
                // after them, so the kernel never sees them change.
                std::memcpy(b->storage.data() + b->size, bytes, take);
                b->size += take;
                b->filled = const_buffer(b->storage.data(), b->size);
                queued_bytes_ += take;
                bytes += take;
                length -= take;
            }
        };
        copy(header.data(), header.size());
        for (const const_buffer& part : body) copy(static_cast<const std::byte*>(part.data()), part.size());
        assert(fresh == nullptr && "every block taken was needed");
        if (queued_bytes_ > peak_bytes_) peak_bytes_ = queued_bytes_;
        return admission::queued;
    }

    /// Blocks kept for reuse after they were sent, so that a stream's steady
    /// traffic allocates nothing; more than this are freed.
    static constexpr std::size_t kept_blocks = 4;

    /// Lists the unsent bytes of queued packets, from the front, as at most
    /// out.size() buffers; marks those packets gathered. Yields the count.
    std::size_t gather(std::span<const_buffer> out) noexcept
    {
        std::size_t count = 0;
        for (detail::send_node* n = queued_.head; n != nullptr && count < out.size(); n = n->next) {
            n->gathered = true;
            std::size_t skip = n->sent;
            if (skip < n->header_size) {
                out[count++] = const_buffer(n->header.data() + skip, n->header_size - skip);
                skip = 0;
            } else {
                skip -= n->header_size;
            }
            for (const const_buffer& b : n->body) {
                if (count == out.size()) break;
                if (skip >= b.size()) {
                    skip -= b.size();
                    continue;
                }
                const_buffer rest = b;
                rest += skip;
                skip = 0;
                if (rest.size() != 0) out[count++] = rest;
            }
        }
        return count;
    }

    /// Accounts for `bytes` taken by the kernel from the front of the last
    /// gather: packets now complete leave the queue and are finished into
    /// `done` with success. Then, if the queue drained to the low watermark,
    /// held-back packets are admitted in order while they fit.
    void consume(std::size_t bytes, detail::resume_list& done) noexcept
    {
        while (bytes != 0 && queued_.head != nullptr) {
            detail::send_node& n = *queued_.head;
            const std::size_t take = (std::min)(bytes, n.size - n.sent);
            n.sent += take;
            bytes -= take;
            if (n.sent != n.size) break;
            queued_.remove(n);
            queued_bytes_ -= n.size;
            finish(n, {}, done);
        }
        // A short write leaves the front packet gathered and partly sent; the
        // rest of the last gather is simply gathered again.
        detail::send_node* n = queued_.head;
        if (n != nullptr && n->sent != 0) n = n->next;
        for (; n != nullptr && n->gathered; n = n->next) n->gathered = false;
        if (queued_bytes_ <= limits_.low_watermark) admit_blocked();
    }

    /// Takes `n` out of the queue if no byte of it is in a write yet (it may
    /// be held back or queued). Returns false if it is already being written,
    /// or is not in the queue at all.
    bool withdraw(detail::send_node& n) noexcept
    {
        if (n.place == detail::send_node::where::blocked) {
            blocked_.remove(n);
            --blocked_count_;
            n.place = detail::send_node::where::none;
            return true;
        }
        if (n.place != detail::send_node::where::queued || n.gathered) return false;
        queued_.remove(n);
        queued_bytes_ -= n.size;
        n.place = detail::send_node::where::none;
        if (queued_bytes_ <= limits_.low_watermark) admit_blocked();
        return true;
    }

    /// Finishes every packet with `ec`: the queued ones (gathered or not)
    /// and the held-back ones. For a stream that failed or was closed.
    void fail_all(std::error_code ec, detail::resume_list& done) noexcept
    {
        for (list* l : {&queued_, &blocked_}) {
            while (l->head != nullptr) {
                detail::send_node& n = *l->head;
                l->remove(n);
                finish(n, ec, done);
            }
        }
        queued_bytes_ = 0;
        blocked_count_ = 0;
    }

    /// Finishes with `ec` every packet that can still be withdrawn (not
    /// gathered); gathered ones stay for the write in flight to finish.
    void fail_unsent(std::error_code ec, detail::resume_list& done) noexcept
    {
        for (list* l : {&blocked_, &queued_}) {
            for (detail::send_node* n = l->head; n != nullptr;) {
                detail::send_node* next = n->next;
                if (!n->gathered) {
                    l->remove(*n);
                    if (l == &queued_) queued_bytes_ -= n->size;
                    finish(*n, ec, done);
                }
                n = next;
            }
        }
        blocked_count_ = 0;
    }

private:
    struct list {
        detail::send_node* head = nullptr;
        detail::send_node* tail = nullptr;

        void push_back(detail::send_node& n) noexcept
        {
            n.next = nullptr;
            n.prev = tail;
            if (tail == nullptr) {
                head = &n;
            } else {
                tail->next = &n;
            }
            tail = &n;
        }
        void remove(detail::send_node& n) noexcept
        {
            (n.prev == nullptr ? head : n.prev->next) = n.next;
            (n.next == nullptr ? tail : n.next->prev) = n.prev;
            n.next = n.prev = nullptr;
        }
    };

    [[nodiscard]] bool fits(std::size_t size) const noexcept
    {
        return queued_bytes_ == 0 || queued_bytes_ + size <= limits_.high_watermark;
    }

    void enqueue(detail::send_node& n) noexcept
    {
        queued_.push_back(n);
        n.place = detail::send_node::where::queued;
        queued_bytes_ += n.size;
        if (queued_bytes_ > peak_bytes_) peak_bytes_ = queued_bytes_;
    }

    /// A writer's node goes to `done`; a block of copies goes back to the
    /// free list (its bytes were sent, or are dropped with the stream).
    void finish(detail::send_node& n, std::error_code ec, detail::resume_list& done) noexcept
    {
        if (n.owned) {
            n.place = detail::send_node::where::none;
            --blocks_queued_;
            recycle(static_cast<detail::outbox_block&>(n));
        } else {
            done.finish(n, ec);
        }
    }

    /// The block at the queue's tail, if the tail is one.
    [[nodiscard]] detail::outbox_block* tail_block() const noexcept
    {
        detail::send_node* t = queued_.tail;
        return t != nullptr && t->owned ? static_cast<detail::outbox_block*>(t) : nullptr;
    }

    [[nodiscard]] detail::outbox_block* take_block() noexcept
    {
        if (free_blocks_ != nullptr) {
            --free_count_;
            return std::exchange(free_blocks_, free_blocks_->next_free);
        }
        return new (std::nothrow) detail::outbox_block;
    }

    void recycle(detail::outbox_block& b) noexcept
    {
        if (free_count_ == kept_blocks) {
            delete &b;
            return;
        }
        b.size = b.sent = 0;
        b.gathered = false;
        b.filled = const_buffer();
        b.next_free = free_blocks_;
        free_blocks_ = &b;
        ++free_count_;
    }

    void admit_blocked() noexcept
    {
        while (blocked_.head != nullptr && fits(blocked_.head->size)) {
            detail::send_node& n = *blocked_.head;
            blocked_.remove(n);
            --blocked_count_;
            enqueue(n);
        }
    }

    send_queue_limits limits_;
    list queued_;
    list blocked_;
    std::size_t queued_bytes_ = 0;
    std::size_t peak_bytes_ = 0;
    std::size_t blocked_count_ = 0;
    detail::outbox_block* free_blocks_ = nullptr;
    std::size_t free_count_ = 0;
    std::size_t blocks_queued_ = 0;
};

PORTICO_NAMESPACE_END
