// Round-trip time histogram for the load client.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace load {

// Log-linear buckets in the manner of HdrHistogram: below 2^(PrecisionBits+1)
// ns one bucket per nanosecond, above it 2^PrecisionBits buckets per power of
// two, so every time is kept within 1/2^PrecisionBits of its value, up to
// 2^35 ns (34 s; longer times share the last bucket, and the maximum is kept
// exactly). Count is the counter type: the buckets are a fixed array, so
// recording never allocates.
template <int PrecisionBits, class Count>
class basic_latency_histogram {
public:
    void record(std::chrono::nanoseconds time) noexcept
    {
        const auto ns = static_cast<std::uint64_t>(std::max<std::int64_t>(time.count(), 0));
        ++counts_[bucket_of(std::min(ns, max_trackable))];
        ++total_;
        max_ = std::max(max_, ns);
    }

    std::uint64_t count() const noexcept { return total_; }

    // The time that per_mille thousandths of the recorded times do not exceed
    // (the middle of its bucket), in microseconds; 0 if nothing was recorded.
    double quantile_us(std::uint64_t per_mille) const noexcept
    {
        const std::uint64_t rank = std::max<std::uint64_t>(1, (total_ * per_mille + 999) / 1000);
        std::uint64_t seen = 0;
        for (std::size_t b = 0; b < counts_.size(); ++b) {
            seen += counts_[b];
            if (seen >= rank) {
                const double middle = static_cast<double>(bucket_low(b)) + static_cast<double>(bucket_width(b) - 1) / 2;
                return std::min(middle, static_cast<double>(max_)) / 1000.0;
            }
        }
        return max_us();
    }

    double max_us() const noexcept { return static_cast<double>(max_) / 1000.0; }

private:
    static constexpr int precision_bits = PrecisionBits;
    static constexpr std::uint64_t sub_buckets = std::uint64_t{1} << precision_bits;
    static constexpr int max_bits = 35;
    static constexpr std::uint64_t max_trackable = (std::uint64_t{1} << max_bits) - 1;
    // Times below 2 * sub_buckets have a bucket each; then one row of
    // sub_buckets per further bit.
    static constexpr std::size_t bucket_count = (max_bits - precision_bits + 1) * sub_buckets;

    // The row's shift: how many low bits a bucket ignores.
    static constexpr int shift_of(std::uint64_t ns) noexcept
    {
        return ns < 2 * sub_buckets ? 0 : std::bit_width(ns) - (precision_bits + 1);
    }
    static constexpr std::size_t bucket_of(std::uint64_t ns) noexcept
    {
        const int shift = shift_of(ns);
        return shift * sub_buckets + (ns >> shift);
    }
    static constexpr int shift_of_bucket(std::size_t b) noexcept
    {
        return b < 2 * sub_buckets ? 0 : static_cast<int>(b / sub_buckets) - 1;
    }
    static constexpr std::uint64_t bucket_low(std::size_t b) noexcept
    {
        const int shift = shift_of_bucket(b);
        return (b - shift * sub_buckets) << shift;
    }
    static constexpr std::uint64_t bucket_width(std::size_t b) noexcept
    {
        return std::uint64_t{1} << shift_of_bucket(b);
    }

    std::array<Count, bucket_count> counts_{};
    std::uint64_t total_ = 0;
    std::uint64_t max_ = 0;
};

// The whole run's: 128 buckets per power of two, every time within 0.8%.
using latency_histogram = basic_latency_histogram<7, std::uint64_t>;

// One connection's, kept beside the whole run's for its median: 32 buckets
// per power of two (every time within 3.1%; a quantile, the middle of its
// bucket, within 1.6%) and 32-bit counts, 3,968 bytes, so 10,000 of them fit
// in 40 MB. Made for a connection when it records its first time.
using connection_histogram = basic_latency_histogram<5, std::uint32_t>;

} // namespace load
