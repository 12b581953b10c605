// portico: send_queue — the sans-I/O queue behind packet_stream's
// write_packet: admission against watermarks, gathering pending packets into
// one write, and accounting for what the write took.
#pragma once

#include <portico/buffer.hpp>
#include <portico/config.hpp>
#include <portico/detail/intrusive_list.hpp>
#include <portico/framing/detail/send_node.hpp>
#include <portico/framing/send_queue_limits.hpp>

#include <algorithm>
#include <cassert>
#include <cstddef>
#include <cstring>
#include <initializer_list>
#include <new>
#include <span>
#include <system_error>

PORTICO_NAMESPACE_BEGIN

namespace detail {

/// The most buffers one write takes: one WSASend gathers up to 64.
inline constexpr std::size_t max_gather_buffers = 64;

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
        for (send_node* n = queued_.front(); n != nullptr && blocks_queued_ != 0;) {
            send_node* next = n->link.next;
            if (n->kind == send_node::owner::copies || n->kind == send_node::owner::shared) {
                destroy(*n);
                --blocks_queued_;
            }
            n = next;
        }
        free_blocks_.drain([](outbox_block& b) noexcept { delete &b; });
        free_chunks_.drain([](shared_chunk& c) noexcept { delete &c; });
    }

    /// The limits given at construction.
    [[nodiscard]] const send_queue_limits& limits() const noexcept { return limits_; }

    /// Bytes of admitted packets not yet taken by the kernel.
    [[nodiscard]] std::size_t queued_bytes() const noexcept { return queued_bytes_; }
    /// What the watermarks are compared with: queued_bytes() plus
    /// shared_entry_charge for each queued shared packet.
    [[nodiscard]] std::size_t charged_bytes() const noexcept { return queued_bytes_ + entry_bytes_; }
    /// The most charged_bytes() has ever been.
    [[nodiscard]] std::size_t peak_queued_bytes() const noexcept { return peak_bytes_; }
    /// Packets held back by the suspend policy.
    [[nodiscard]] std::size_t blocked_packets() const noexcept { return blocked_count_; }
    /// True if queued bytes are waiting to be gathered.
    [[nodiscard]] bool has_unsent() const noexcept { return !queued_.empty(); }

    /// Admits `n` (size set, not in any list). A packet that arrives while
    /// others are held back queues behind them, so admission keeps arrival
    /// order. With `grace`, the queue may go up to limits().grace_bytes over
    /// the high watermark (the owner decides whether the grace is open).
    admission admit(send_node& n, bool grace = false) noexcept
    {
        assert(n.place == send_node::where::none);
        if (blocked_.empty() && fits(n.size, grace)) {
            enqueue(n);
            return admission::queued;
        }
        if (limits_.policy != overflow_policy::suspend) return admission::refused;
        blocked_.push_back(n);
        n.place = send_node::where::blocked;
        ++blocked_count_;
        return admission::blocked;
    }

    /// Copies a packet of `size` bytes (`header`, then `body`) onto the tail
    /// of the queue, into blocks the queue owns (kept for reuse once sent,
    /// up to kept_blocks of them). Refused like admit() when it does not fit
    /// under the high watermark, and also while writers are held back: a
    /// copy cannot wait behind them, and may not overtake them.
    admission append_copy(std::span<const std::byte> header, std::span<const const_buffer> body, std::size_t size,
                          bool grace = false) noexcept
    {
        if (!blocked_.empty() || !fits(size, grace)) return admission::refused;
        // Every block needed is in hand before any byte is copied: running
        // out of memory halfway would leave half a packet queued.
        outbox_block* tail = tail_block();
        const std::size_t in_tail = tail != nullptr ? (std::min)(tail->room(), size) : 0;
        std::size_t needed = (size - in_tail + outbox_block::capacity - 1) / outbox_block::capacity;
        block_list fresh;
        for (; needed != 0; --needed) {
            outbox_block* b = take_block();
            if (b == nullptr) {
                fresh.drain([this](outbox_block& unused) noexcept { recycle(unused); });
                return admission::out_of_memory;
            }
            fresh.push_front(*b);
        }
        const auto copy = [&](const std::byte* bytes, std::size_t length) noexcept {
            while (length != 0) {
                outbox_block* b = tail_block();
                if (b == nullptr || b->room() == 0) {
                    b = fresh.pop_front();
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
        assert(fresh.empty() && "every block taken was needed");
        if (charged_bytes() > peak_bytes_) peak_bytes_ = charged_bytes();
        return admission::queued;
    }

    /// Blocks kept for reuse after they were sent, so that a stream's steady
    /// traffic allocates nothing; more than this are freed.
    static constexpr std::size_t kept_blocks = 4;

    /// What a queued shared packet costs beside its bytes, counted against
    /// the watermarks: its entry in a chunk (and a share of the chunk), and
    /// its block's own header. So a stream whose peer stopped reading pins
    /// at most about the high watermark, however small its packets are.
    static constexpr std::size_t shared_entry_charge =
        sizeof(const_buffer) + sizeof(shared_packet) + shared_packet::overhead +
        (sizeof(shared_chunk) - shared_chunk::capacity * (sizeof(const_buffer) + sizeof(shared_packet)) +
         shared_chunk::capacity - 1) /
            shared_chunk::capacity;

    /// Chunks of shared packets kept for reuse, as kept_blocks.
    static constexpr std::size_t kept_chunks = 2;

    /// The owner went quiet: frees the blocks and chunks kept for reuse,
    /// and the ones queued now once their write gives them back. Blocks
    /// taken later are kept as usual: a stream whose peer is silent but
    /// which goes on sending (a member who only listens to a chat) reuses
    /// its block from the second packet on, while one quiet both ways (an
    /// echo answered, then nothing) ends up holding none.
    void release_spares() noexcept
    {
        free_blocks_.drain([](outbox_block& b) noexcept { delete &b; });
        free_count_ = 0;
        free_chunks_.drain([](shared_chunk& c) noexcept { delete &c; });
        free_chunk_count_ = 0;
        free_on_return_ = blocks_queued_;
    }
    /// Bytes of the blocks and chunks kept for reuse now.
    [[nodiscard]] std::size_t spare_bytes() const noexcept
    {
        return free_count_ * sizeof(outbox_block) + free_chunk_count_ * sizeof(shared_chunk);
    }

    /// Queues a reference to `packet` (already checked against the format)
    /// at the tail of the queue: its bytes are not copied. Refused like
    /// append_copy(); out_of_memory if a new chunk could not be allocated.
    /// On refusal `packet` is left untouched.
    admission append_shared(shared_packet& packet, bool grace = false) noexcept
    {
        const std::size_t size = packet.bytes().size();
        if (!blocked_.empty() || !fits(size + shared_entry_charge, grace)) return admission::refused;
        shared_chunk* chunk = tail_chunk();
        if (chunk == nullptr || chunk->full()) {
            chunk = take_chunk();
            if (chunk == nullptr) return admission::out_of_memory;
            enqueue(*chunk);
            ++blocks_queued_;
        }
        // NOTE: the chunk may be part of the write in flight; that write
        // holds a copy of the buffers gathered before, and this one lands
        // after them.
        chunk->push(std::move(packet));
        queued_bytes_ += size;
        entry_bytes_ += shared_entry_charge;
        if (charged_bytes() > peak_bytes_) peak_bytes_ = charged_bytes();
        return admission::queued;
    }

    /// Lists the unsent bytes of queued packets, from the front, as at most
    /// out.size() buffers; marks those packets gathered. Yields the count.
    std::size_t gather(std::span<const_buffer> out) noexcept
    {
        std::size_t count = 0;
        for (send_node* n = queued_.front(); n != nullptr && count < out.size(); n = n->link.next) {
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
    void consume(std::size_t bytes, resume_list& done) noexcept
    {
        while (bytes != 0 && !queued_.empty()) {
            send_node& n = *queued_.front();
            const std::size_t take = (std::min)(bytes, n.size - n.sent);
            n.sent += take;
            bytes -= take;
            if (n.sent != n.size) break;
            unqueue(n);
            finish(n, {}, done);
        }
        // A short write leaves the front packet gathered and partly sent; the
        // rest of the last gather is simply gathered again.
        send_node* n = queued_.front();
        if (n != nullptr && n->sent != 0) n = n->link.next;
        for (; n != nullptr && n->gathered; n = n->link.next) n->gathered = false;
        if (charged_bytes() <= limits_.low_watermark) admit_blocked();
    }

    /// Queues a node the stream owns (a heartbeat packet, size and header
    /// set, not in the queue) at the tail if it fits now, without a grace.
    /// False otherwise: it never waits behind held-back writers and never
    /// brings the overflow policy on (a peer that does not read cannot
    /// answer a ping anyway).
    bool append_own(send_node& n) noexcept
    {
        assert(n.kind == send_node::owner::stream && n.place == send_node::where::none);
        if (!fits_now(n.size)) return false;
        n.sent = 0;
        n.gathered = false;
        enqueue(n);
        return true;
    }

    /// Queues `n` whatever the watermarks: the last packet of a stream that
    /// has stopped (everything unsent was dropped before).
    void force(send_node& n) noexcept
    {
        assert(n.place == send_node::where::none);
        enqueue(n);
    }

    /// True if a packet charged `charge` bytes would be admitted now without
    /// a grace.
    [[nodiscard]] bool fits_now(std::size_t charge) const noexcept { return blocked_.empty() && fits(charge, false); }

    /// True while the queue is above its high watermark (in a grace).
    [[nodiscard]] bool over_watermark() const noexcept { return charged_bytes() > limits_.high_watermark; }

    /// Takes `n` out of the queue if no byte of it is in a write yet (it may
    /// be held back or queued). Returns false if it is already being written,
    /// or is not in the queue at all.
    bool withdraw(send_node& n) noexcept
    {
        if (n.place == send_node::where::blocked) {
            blocked_.remove(n);
            --blocked_count_;
            n.place = send_node::where::none;
            return true;
        }
        if (n.place != send_node::where::queued || n.gathered) return false;
        unqueue(n);
        n.place = send_node::where::none;
        if (charged_bytes() <= limits_.low_watermark) admit_blocked();
        return true;
    }

    /// Finishes every packet with `ec`: the queued ones (gathered or not)
    /// and the held-back ones. For a stream that failed or was closed.
    void fail_all(std::error_code ec, resume_list& done) noexcept
    {
        for (node_list* l : {&queued_, &blocked_}) l->drain([&](send_node& n) noexcept { finish(n, ec, done); });
        queued_bytes_ = 0;
        entry_bytes_ = 0;
        blocked_count_ = 0;
    }

    /// Finishes with `ec` every packet that can still be withdrawn (not
    /// gathered); gathered ones stay for the write in flight to finish.
    void fail_unsent(std::error_code ec, resume_list& done) noexcept
    {
        for (node_list* l : {&blocked_, &queued_}) {
            for (send_node* n = l->front(); n != nullptr;) {
                send_node* next = n->link.next;
                if (!n->gathered) {
                    if (l == &queued_) {
                        unqueue(*n);
                    } else {
                        l->remove(*n);
                    }
                    finish(*n, ec, done);
                }
                n = next;
            }
        }
        blocked_count_ = 0;
    }

private:
    using node_list = intrusive_list<send_node, &send_node::link>;
    using block_list = intrusive_queue<outbox_block, &outbox_block::next_free>;
    using chunk_list = intrusive_queue<shared_chunk, &shared_chunk::next_free>;

    [[nodiscard]] bool fits(std::size_t charge, bool grace = false) const noexcept
    {
        const std::size_t ceiling = limits_.high_watermark + (grace ? limits_.grace_bytes : 0);
        return charged_bytes() == 0 || charged_bytes() + charge <= ceiling;
    }

    void enqueue(send_node& n) noexcept
    {
        queued_.push_back(n);
        n.place = send_node::where::queued;
        queued_bytes_ += n.size;
        if (charged_bytes() > peak_bytes_) peak_bytes_ = charged_bytes();
    }

    /// Takes `n` out of the queued list and out of the accounting.
    void unqueue(send_node& n) noexcept
    {
        queued_.remove(n);
        queued_bytes_ -= n.size;
        if (n.kind == send_node::owner::shared) {
            entry_bytes_ -= static_cast<shared_chunk&>(n).count * shared_entry_charge;
        }
    }

    /// A writer's node goes to `done`; a block of copies or a chunk of
    /// shared packets goes back to its free list (its bytes were sent, or
    /// are dropped with the stream); a stream's own node is free again.
    void finish(send_node& n, std::error_code ec, resume_list& done) noexcept
    {
        switch (n.kind) {
        case send_node::owner::writer: done.finish(n, ec); return;
        case send_node::owner::copies:
            n.place = send_node::where::none;
            --blocks_queued_;
            recycle(static_cast<outbox_block&>(n));
            return;
        case send_node::owner::shared:
            n.place = send_node::where::none;
            --blocks_queued_;
            recycle(static_cast<shared_chunk&>(n));
            return;
        case send_node::owner::stream: n.place = send_node::where::none; return;
        }
    }

    static void destroy(send_node& n) noexcept
    {
        if (n.kind == send_node::owner::copies) {
            delete static_cast<outbox_block*>(&n);
        } else {
            delete static_cast<shared_chunk*>(&n);
        }
    }

    /// The block at the queue's tail, if the tail is one.
    [[nodiscard]] outbox_block* tail_block() const noexcept
    {
        send_node* t = queued_.back();
        return t != nullptr && t->kind == send_node::owner::copies ? static_cast<outbox_block*>(t) : nullptr;
    }

    /// The chunk at the queue's tail, if the tail is one.
    [[nodiscard]] shared_chunk* tail_chunk() const noexcept
    {
        send_node* t = queued_.back();
        return t != nullptr && t->kind == send_node::owner::shared ? static_cast<shared_chunk*>(t) : nullptr;
    }

    [[nodiscard]] shared_chunk* take_chunk() noexcept
    {
        if (!free_chunks_.empty()) {
            --free_chunk_count_;
            return free_chunks_.pop_front();
        }
        return new (std::nothrow) shared_chunk;
    }

    void recycle(shared_chunk& c) noexcept
    {
        c.clear();
        if (free_on_return_ != 0 || free_chunk_count_ == kept_chunks) {
            if (free_on_return_ != 0) --free_on_return_;
            delete &c;
            return;
        }
        free_chunks_.push_front(c);
        ++free_chunk_count_;
    }

    [[nodiscard]] outbox_block* take_block() noexcept
    {
        if (!free_blocks_.empty()) {
            --free_count_;
            return free_blocks_.pop_front();
        }
        return new (std::nothrow) outbox_block;
    }

    void recycle(outbox_block& b) noexcept
    {
        if (free_on_return_ != 0 || free_count_ == kept_blocks) {
            if (free_on_return_ != 0) --free_on_return_;
            delete &b;
            return;
        }
        b.size = b.sent = 0;
        b.gathered = false;
        b.filled = const_buffer();
        free_blocks_.push_front(b);
        ++free_count_;
    }

    void admit_blocked() noexcept
    {
        while (!blocked_.empty() && fits(blocked_.front()->size)) {
            send_node& n = *blocked_.front();
            blocked_.remove(n);
            --blocked_count_;
            enqueue(n);
        }
    }

    send_queue_limits limits_;
    node_list queued_;
    node_list blocked_;
    std::size_t queued_bytes_ = 0;
    // shared_entry_charge per shared packet queued.
    std::size_t entry_bytes_ = 0;
    std::size_t peak_bytes_ = 0;
    std::size_t blocked_count_ = 0;
    block_list free_blocks_;
    std::size_t free_count_ = 0;
    chunk_list free_chunks_;
    std::size_t free_chunk_count_ = 0;
    // Blocks and chunks queued when release_spares() was called: freed, not
    // kept, as they come back.
    std::size_t free_on_return_ = 0;
    // Blocks of copies and chunks of shared packets in the queue.
    std::size_t blocks_queued_ = 0;
};

} // namespace detail

PORTICO_NAMESPACE_END
