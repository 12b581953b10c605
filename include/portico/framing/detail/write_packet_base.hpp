// portico: write_packet_base — what the write_packet awaiters share: the
// queue node, the reference on the stream's state while it waits, and the
// writer's stop callback.
#pragma once

#include <portico/buffer.hpp>
#include <portico/config.hpp>
#include <portico/coro/task.hpp>
#include <portico/error.hpp>
#include <portico/framing/detail/send_node.hpp>
#include <portico/framing/detail/stream_core.hpp>
#include <portico/framing/packet_format.hpp>
#include <portico/stop_token.hpp>

#include <cassert>
#include <concepts>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <span>
#include <system_error>
#include <utility>

PORTICO_NAMESPACE_BEGIN

namespace detail {

/// What the write_packet awaiters share: the node, the reference on the core
/// while it waits, the stop callback, and the awaiter protocol itself. `Op`
/// is the awaiter (CRTP): it provides `body_buffers()`, the packet's body as
/// buffers, read when the awaiter is awaited (after any move).
template <class Stream, class Op>
class write_packet_base {
public:
    write_packet_base(const write_packet_base&) = delete;
    write_packet_base& operator=(const write_packet_base&) = delete;
    write_packet_base& operator=(write_packet_base&&) = delete;

    /// The awaiter protocol (co_await): completes at once with a setup error;
    /// otherwise queues the packet and suspends until it was handed to the
    /// kernel or failed, and yields io_result<void>.
    bool await_ready() const noexcept { return static_cast<bool>(setup_error_); }

    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> awaiting)
    {
        node_.body = static_cast<Op&>(*this).body_buffers();
        node_.waiter = awaiting;
        core_->add_ref();
        holds_core_ = true;
        return core_->start_write(node_, detail::stop_token_of(awaiting), cancel_);
    }

    io_result<void> await_resume() noexcept
    {
        // Waits for a canceller running on another thread.
        cancel_.reset();
        if (std::exchange(holds_core_, false)) core_->release();
        return {setup_error_ ? setup_error_ : node_.result};
    }

protected:
    struct canceller {
        stream_core<Stream>* core;
        send_node* node;
        void operator()() const noexcept { core->withdraw(*node); }
    };

    explicit write_packet_base(stream_core<Stream>* core) noexcept : core_(core)
    {
        if (core_ == nullptr) setup_error_ = make_error_code(errc::bad_state);
    }
    /// Moves an awaiter not awaited yet (with_timeout, when_all take
    /// awaitables by value): the encoded header and the setup error.
    write_packet_base(write_packet_base&& other) noexcept : core_(other.core_), setup_error_(other.setup_error_)
    {
        assert(!other.holds_core_ && "moving a write_packet that was already awaited");
        node_.header = other.node_.header;
        node_.header_size = other.node_.header_size;
        node_.size = other.node_.size;
        node_.last_word = other.node_.last_word;
    }
    /// Destroyed while waiting (its coroutine's frame was destroyed without
    /// being resumed): a packet not yet being written is taken out of the
    /// queue; one the driver is writing cannot be, and the frame holding it
    /// is about to be freed under the write, so that is fatal.
    ~write_packet_base()
    {
        if (!holds_core_) return;
        cancel_.reset();
        if (!core_->withdraw_quietly(node_)) std::terminate();
        core_->release();
    }

    /// Encodes the header of a packet of `type` with `body_size` bytes of
    /// body into the node (the error, if any, becomes the setup error).
    void encode(std::uint32_t type, std::size_t body_size) noexcept
    {
        if (setup_error_) return;
        auto [ec, header] = encode_header(core_->options.format, type, body_size, node_.header);
        if (ec) {
            setup_error_ = ec;
            return;
        }
        node_.header_size = header;
        node_.size = header + body_size;
    }

    stream_core<Stream>* core_;
    std::error_code setup_error_;
    send_node node_;

private:
    bool holds_core_ = false;
    std::optional<portico::stop_callback<canceller>> cancel_;
};

/// What write_packet and queue_packet take as one part of a body: anything
/// buffer() accepts, but a span of buffers (that is the gather form) and a
/// character array. A string literal is refused because its terminating
/// '\0' would be sent too: write std::string_view("hello") for its
/// characters, or buffer(array) to send every byte of an array on purpose.
template <class B>
concept body_buffer = requires(const B& b) { const_buffer(buffer(b)); } &&
                      !std::convertible_to<const B&, std::span<const const_buffer>> && !character_array<B>;

} // namespace detail

PORTICO_NAMESPACE_END
