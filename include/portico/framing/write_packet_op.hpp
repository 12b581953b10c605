// portico: write_packet_op — the awaiters packet_stream::write_packet()
// returns: the packet's node lives in the awaiter, so queuing allocates
// nothing.
#pragma once

#include <portico/buffer.hpp>
#include <portico/config.hpp>
#include <portico/error.hpp>
#include <portico/framing/detail/stream_core.hpp>
#include <portico/framing/detail/write_packet_base.hpp>
#include <portico/framing/packet_format.hpp>
#include <portico/framing/shared_packet.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

PORTICO_NAMESPACE_BEGIN

/// Awaiter of packet_stream::write_packet(type, body...): the header lives
/// in the awaiter, the body stays where the caller has it (no copy), and
/// the awaiter itself is the queue node (no allocation).
///
/// Awaiting it (co_await) queues the packet and suspends until the whole
/// packet was handed to the kernel or failed, then yields io_result<void>
/// (errors: see packet_stream::write_packet); a setup error is yielded at
/// once, with nothing sent. It may be moved until it is awaited
/// (with_timeout and when_all take awaitables by value), not after.
template <class Stream, std::size_t N>
class [[nodiscard]] write_packet_op : public detail::write_packet_base<Stream, write_packet_op<Stream, N>> {
    using base = detail::write_packet_base<Stream, write_packet_op>;
    friend base;

public:
    /// Made by packet_stream::write_packet(type, body...): encodes the header
    /// of a packet of `type` carrying `body`. Setup errors: bad_state for a
    /// moved-from stream, or the encoding's packet_too_large or
    /// invalid_argument.
    write_packet_op(detail::stream_core<Stream>* core, std::uint32_t type, std::array<const_buffer, N> body) noexcept
        : base(core), body_(body)
    {
        this->encode(type, buffer_size(body_));
    }

private:
    std::span<const const_buffer> body_buffers() const noexcept { return body_; }

    std::array<const_buffer, N> body_;
};

/// Awaiter of packet_stream::write_packet(type, span of buffers): as
/// write_packet_op, with the caller's array of buffers, which must stay
/// alive until the write completes. Awaiting and moving it: as
/// write_packet_op.
template <class Stream>
class [[nodiscard]] write_packet_gather_op : public detail::write_packet_base<Stream, write_packet_gather_op<Stream>> {
    using base = detail::write_packet_base<Stream, write_packet_gather_op>;
    friend base;

public:
    /// Made by packet_stream::write_packet(type, span of buffers): as
    /// write_packet_op's constructor.
    write_packet_gather_op(detail::stream_core<Stream>* core, std::uint32_t type,
                           std::span<const const_buffer> body) noexcept
        : base(core), body_(body)
    {
        this->encode(type, buffer_size(body_));
    }

private:
    std::span<const const_buffer> body_buffers() const noexcept { return body_; }

    std::span<const const_buffer> body_;
};

/// Awaiter of packet_stream::write_packet(shared_packet): holds a reference
/// on the packet's bytes until the write completes (moving it moves the
/// reference). Awaiting and moving it: as write_packet_op.
template <class Stream>
class [[nodiscard]] write_shared_op : public detail::write_packet_base<Stream, write_shared_op<Stream>> {
    using base = detail::write_packet_base<Stream, write_shared_op>;
    friend base;

public:
    /// Made by packet_stream::write_packet(shared_packet): holds a reference
    /// on `packet`. Setup errors: bad_state for a moved-from stream;
    /// invalid_argument if `packet` is empty or its header layout is not the
    /// stream's; packet_too_large if it is larger than the stream's format
    /// allows.
    write_shared_op(detail::stream_core<Stream>* core, shared_packet packet) noexcept
        : base(core), packet_(std::move(packet))
    {
        if (this->setup_error_) return;
        this->setup_error_ = detail::shared_packet_mismatch(core->options.format, packet_);
        this->node_.size = packet_.bytes().size();
    }

private:
    std::span<const const_buffer> body_buffers() noexcept
    {
        whole_ = const_buffer(packet_.bytes().data(), packet_.bytes().size());
        return std::span<const const_buffer>(&whole_, 1);
    }

    shared_packet packet_;
    const_buffer whole_;
};

PORTICO_NAMESPACE_END
