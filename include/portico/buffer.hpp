// portico: buffers and buffer sequences for scatter/gather I/O.
#pragma once

#include <portico/config.hpp>

#include <array>
#include <concepts>
#include <cstddef>
#include <iterator>
#include <ranges>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <vector>

PORTICO_NAMESPACE_BEGIN

/// A writable region of memory portico reads into. Does not own the memory.
class mutable_buffer {
public:
    constexpr mutable_buffer() noexcept = default;
    /// Views the `size` bytes at `data`.
    constexpr mutable_buffer(void* data, std::size_t size) noexcept : data_(data), size_(size) {}

    /// The start of the region (null for a default-constructed buffer).
    [[nodiscard]] constexpr void* data() const noexcept { return data_; }
    /// The length of the region in bytes.
    [[nodiscard]] constexpr std::size_t size() const noexcept { return size_; }

    /// Drops the first n bytes (all of them if n > size()).
    constexpr mutable_buffer& operator+=(std::size_t n) noexcept
    {
        const std::size_t skip = n < size_ ? n : size_;
        data_ = static_cast<std::byte*>(data_) + skip;
        size_ -= skip;
        return *this;
    }

private:
    void* data_ = nullptr;
    std::size_t size_ = 0;
};

/// A read-only region of memory portico writes from. Does not own the memory.
class const_buffer {
public:
    constexpr const_buffer() noexcept = default;
    /// Views the `size` bytes at `data`.
    constexpr const_buffer(const void* data, std::size_t size) noexcept : data_(data), size_(size) {}
    /// Views the memory of `b`, read-only (an implicit conversion).
    constexpr const_buffer(const mutable_buffer& b) noexcept : data_(b.data()), size_(b.size()) {}

    /// The start of the region (null for a default-constructed buffer).
    [[nodiscard]] constexpr const void* data() const noexcept { return data_; }
    /// The length of the region in bytes.
    [[nodiscard]] constexpr std::size_t size() const noexcept { return size_; }

    /// Drops the first n bytes (all of them if n > size()).
    constexpr const_buffer& operator+=(std::size_t n) noexcept
    {
        const std::size_t skip = n < size_ ? n : size_;
        data_ = static_cast<const std::byte*>(data_) + skip;
        size_ -= skip;
        return *this;
    }

private:
    const void* data_ = nullptr;
    std::size_t size_ = 0;
};

/// `buffer(...)` views existing memory as a buffer: raw pointer and size,
/// contiguous ranges of trivially copyable elements (arrays, std::array,
/// std::vector, std::span, std::string, std::string_view). Mutable when the
/// memory is. The memory must outlive the operation that uses the buffer.
[[nodiscard]] constexpr mutable_buffer buffer(void* data, std::size_t size) noexcept { return {data, size}; }
[[nodiscard]] constexpr const_buffer buffer(const void* data, std::size_t size) noexcept { return {data, size}; }
[[nodiscard]] constexpr mutable_buffer buffer(const mutable_buffer& b) noexcept { return b; }
[[nodiscard]] constexpr const_buffer buffer(const const_buffer& b) noexcept { return b; }

template <class R>
    requires std::ranges::contiguous_range<R> && std::ranges::sized_range<R> &&
             std::is_trivially_copyable_v<std::ranges::range_value_t<R>>
[[nodiscard]] constexpr auto buffer(R&& r) noexcept
{
    using element = std::remove_reference_t<std::ranges::range_reference_t<R>>;
    const std::size_t bytes = std::ranges::size(r) * sizeof(element);
    if constexpr (std::is_const_v<element>) {
        return const_buffer{std::ranges::data(r), bytes};
    } else {
        return mutable_buffer{std::ranges::data(r), bytes};
    }
}

/// A single buffer, or a range of buffers, that can be read from (gathered).
template <class B>
concept const_buffer_sequence =
    std::convertible_to<const B&, const_buffer> ||
    (std::ranges::forward_range<const B> && std::convertible_to<std::ranges::range_reference_t<const B>, const_buffer>);

/// A single buffer, or a range of buffers, that can be written into (scattered).
template <class B>
concept mutable_buffer_sequence = std::convertible_to<const B&, mutable_buffer> ||
                                  (std::ranges::forward_range<const B> &&
                                   std::convertible_to<std::ranges::range_reference_t<const B>, mutable_buffer>);

namespace detail {

/// Calls f(buffer) for each buffer of the sequence, in order.
template <class Buffer, class Sequence, class F>
constexpr void for_each_buffer(const Sequence& s, F&& f)
{
    if constexpr (std::convertible_to<const Sequence&, Buffer>) {
        f(Buffer(s));
    } else {
        for (const auto& b : s) f(Buffer(b));
    }
}

/// The most buffers a sequence of type Sequence can hold, as its type tells:
/// 1 for a single buffer, N for a std::array, a C array or a std::span of
/// static extent N; std::dynamic_extent when only its value tells. An
/// operation sizes its array of system buffers (WSABUF, iovec) by it, so
/// that a read into one buffer does not carry room for 64.
template <class Buffer, class Sequence>
constexpr std::size_t static_buffer_count() noexcept
{
    if constexpr (std::convertible_to<const Sequence&, Buffer>) {
        return 1;
    } else if constexpr (std::is_array_v<Sequence>) {
        return std::extent_v<Sequence>;
    } else if constexpr (requires { std::tuple_size<Sequence>::value; } &&
                         std::ranges::contiguous_range<const Sequence>) {
        return std::tuple_size<Sequence>::value;
    } else if constexpr (requires { Sequence::extent; }) {
        return Sequence::extent;
    } else {
        return std::dynamic_extent;
    }
}

/// An array of characters: the type of a string literal. buffer() of one
/// covers the whole array, terminating '\0' included, which is right for a
/// byte array and a trap for text ("hello" is 6 bytes). packet bodies refuse
/// it at compile time (framing); unsigned char and std::byte arrays are bytes
/// and are accepted.
template <class T>
concept character_array = std::is_array_v<T> && (std::is_same_v<std::remove_cv_t<std::remove_extent_t<T>>, char> ||
                                                 std::is_same_v<std::remove_cv_t<std::remove_extent_t<T>>, char8_t> ||
                                                 std::is_same_v<std::remove_cv_t<std::remove_extent_t<T>>, char16_t> ||
                                                 std::is_same_v<std::remove_cv_t<std::remove_extent_t<T>>, char32_t> ||
                                                 std::is_same_v<std::remove_cv_t<std::remove_extent_t<T>>, wchar_t>);

} // namespace detail

/// Total bytes in a buffer sequence.
template <class Sequence>
    requires const_buffer_sequence<Sequence>
[[nodiscard]] constexpr std::size_t buffer_size(const Sequence& s) noexcept
{
    std::size_t total = 0;
    detail::for_each_buffer<const_buffer>(s, [&](const const_buffer& b) { total += b.size(); });
    return total;
}

/// Walks a buffer sequence across partial transfers: prepare() lists the next
/// at most N non-empty buffers from the current position, consume(n) moves the
/// position n bytes on. This is how read()/write_all() loop over short
/// transfers without copying or allocating. The sequence must outlive it.
/// Thread safety: not shared between threads.
template <class Buffer, class Sequence>
class buffer_cursor {
public:
    /// A cursor at the start of `s`, which must outlive it.
    explicit constexpr buffer_cursor(const Sequence& s) noexcept : sequence_(s), remaining_(buffer_size(s)) {}

    /// Bytes not yet consumed.
    [[nodiscard]] constexpr std::size_t remaining() const noexcept { return remaining_; }
    /// True once every byte was consumed (remaining() is 0).
    [[nodiscard]] constexpr bool empty() const noexcept { return remaining_ == 0; }

    /// Fills `out` with the next buffers from the current position, skipping
    /// empty ones. Returns how many were written (at most out.size()).
    template <std::size_t N>
    constexpr std::size_t prepare(std::span<Buffer, N> out) const noexcept
    {
        std::size_t count = 0;
        std::size_t index = 0;
        detail::for_each_buffer<Buffer>(sequence_, [&](Buffer b) {
            if (count == out.size()) return;
            if (index < buffer_index_) {
                ++index;
                return;
            }
            if (index == buffer_index_) b += offset_;
            ++index;
            if (b.size() != 0) out[count++] = b;
        });
        return count;
    }

    /// Moves the position n bytes on (at most to the end).
    constexpr void consume(std::size_t n) noexcept
    {
        n = n < remaining_ ? n : remaining_;
        remaining_ -= n;
        std::size_t index = 0;
        detail::for_each_buffer<Buffer>(sequence_, [&](const Buffer& b) {
            // Only the current buffer is examined; finishing it makes the
            // next one current, so one pass handles any n. Empty buffers are
            // passed over.
            if (index++ != buffer_index_) return;
            const std::size_t left = b.size() - offset_;
            if (n < left) {
                offset_ += n;
                n = 0;
                return;
            }
            n -= left;
            ++buffer_index_;
            offset_ = 0;
        });
    }

private:
    const Sequence& sequence_;
    std::size_t remaining_;
    std::size_t buffer_index_ = 0; // first buffer not fully consumed
    std::size_t offset_ = 0;       // bytes consumed in it
};

PORTICO_NAMESPACE_END
