// portico: send_node — one packet in packet_stream's send queue, the blocks
// that hold copied and shared packets, and the list of writers to resume once
// the stream's lock is released.
#pragma once

#include <portico/buffer.hpp>
#include <portico/config.hpp>
#include <portico/detail/intrusive_list.hpp>
#include <portico/detail/resume_handshake.hpp>
#include <portico/framing/shared_packet.hpp>

#include <array>
#include <coroutine>
#include <cstddef>
#include <span>
#include <system_error>
#include <utility>

PORTICO_NAMESPACE_BEGIN

namespace detail {

/// The largest header a packet_format can describe (4-byte size, 4-byte type).
inline constexpr std::size_t max_header_size = 8;

/// Selects the constructor of a write awaiter that carries a stream's last
/// word (packet_stream::close_with).
struct last_word_tag {};

/// One packet handed to write_packet: it lives in the writer's awaiter, so
/// queuing it allocates nothing. `link`, `sent`, `gathered` and `place`
/// belong to the queue (guarded by its owner's lock); `handshake` decides
/// who resumes the writer: the writer itself, if the node is finished while
/// it is still in await_suspend, or whoever finishes it (resume_list).
struct send_node {
    enum class where : unsigned char { none, queued, blocked };
    /// Who owns the node: a writer's awaiter, the queue itself (an
    /// outbox_block of copies or a shared_chunk of shared packets, with no
    /// writer to finish), or the stream (its header-only heartbeat packets,
    /// a ping and a pong, reused: finishing one only makes it free again).
    enum class owner : unsigned char { writer, copies, shared, stream };

    /// Its place in the send queue's list of queued or held-back packets.
    list_hook<send_node> link;
    /// Its place in a resume_list, once finished.
    send_node* resume_next = nullptr;
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
    owner kind = owner::writer;
    /// The last packet of a stream stopped by a limit (close_with): admitted
    /// after the stop, whatever the watermarks.
    bool last_word = false;
    std::error_code result;
    std::coroutine_handle<> waiter;
    /// idle while the writer is in await_suspend, running once it suspended,
    /// done once finished (resume_handshake's table; no cancel or orphan
    /// states: a withdrawn node is finished like any other).
    resume_handshake handshake;
};

/// Packets copied into the queue (packet_stream::queue_packet): a node the
/// queue owns whose body is its own storage. Copies fill the block at the
/// queue's tail before a new one is started, so a burst of small packets
/// leaves as one buffer of one write.
struct outbox_block : send_node {
    static constexpr std::size_t capacity = 4096;

    outbox_block() noexcept
    {
        kind = owner::copies;
        body = std::span<const const_buffer>(&filled, 1);
    }
    outbox_block(const outbox_block&) = delete;
    outbox_block& operator=(const outbox_block&) = delete;

    [[nodiscard]] std::size_t room() const noexcept { return capacity - size; }

    /// The stored bytes, as the node's one body buffer.
    const_buffer filled;
    /// Its place in the queue's list of blocks kept for reuse.
    outbox_block* next_free = nullptr;
    std::array<std::byte, capacity> storage;
};

/// Shared packets queued by packet_stream::queue_packet(shared_packet): a
/// node the queue owns that holds a reference on each packet and lists their
/// bytes as its body, one buffer each, so a broadcast costs each recipient
/// an entry here and no copy. Entries are added at the queue's tail while
/// there is room, as copies fill an outbox_block.
struct shared_chunk : send_node {
    static constexpr std::size_t capacity = 16;

    shared_chunk() noexcept { kind = owner::shared; }
    shared_chunk(const shared_chunk&) = delete;
    shared_chunk& operator=(const shared_chunk&) = delete;

    [[nodiscard]] bool full() const noexcept { return count == capacity; }

    /// Appends `p` (its bytes become the last body buffer).
    void push(shared_packet&& p) noexcept
    {
        const std::span<const std::byte> bytes = p.bytes();
        parts[count] = const_buffer(bytes.data(), bytes.size());
        packets[count] = std::move(p);
        ++count;
        size += bytes.size();
        body = std::span<const const_buffer>(parts.data(), count);
    }

    /// Drops every reference (the last one frees its packet) and empties
    /// the chunk for reuse.
    void clear() noexcept
    {
        for (std::size_t i = 0; i != count; ++i) packets[i] = shared_packet();
        count = 0;
        size = sent = 0;
        gathered = false;
        body = {};
    }

    std::size_t count = 0;
    /// Its place in the queue's list of chunks kept for reuse.
    shared_chunk* next_free = nullptr;
    std::array<const_buffer, capacity> parts{};
    std::array<shared_packet, capacity> packets{};
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
        // RACE: complete() publishes `result`; if the writer was still
        // starting, it may destroy the node the moment this returns.
        if (n.handshake.complete() == resume_handshake::state::running) waiting_.push_back(n);
    }

    /// Resumes every kept writer, in finishing order, on this thread.
    void resume_all() noexcept
    {
        // NOTE: a resumed writer may destroy its node; drain() unlinks each
        // node before it is handed over.
        waiting_.drain([](send_node& n) noexcept { n.waiter.resume(); });
    }

private:
    intrusive_queue<send_node, &send_node::resume_next> waiting_;
};

} // namespace detail

PORTICO_NAMESPACE_END
