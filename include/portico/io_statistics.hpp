// portico: counters an io_context keeps about its own work.
#pragma once

#include <portico/config.hpp>

#include <cstddef>
#include <cstdint>
#include <iterator>

PORTICO_NAMESPACE_BEGIN

/// A snapshot of an io_context's counters, from io_context::statistics().
///
/// Counts are totals since the context was created; subtract two snapshots
/// to measure an interval. Each pool thread counts into its own block, so
/// keeping them costs no shared writes on the hot path. A snapshot taken
/// while threads run is consistent per counter, not across counters.
struct io_statistics {
    /// Calls to GetQueuedCompletionStatusEx that returned.
    std::uint64_t dequeue_calls = 0;
    /// Completion packets dequeued, wake-ups included.
    std::uint64_t completions = 0;
    /// Times a pool thread found nothing to run and blocked in the system
    /// until something came (a GetQueuedCompletionStatusEx call with no
    /// time-out; on Linux, an io_uring_enter that waits). Each costs a
    /// wake-up, tens of microseconds, when work arrives.
    std::uint64_t idle_waits = 0;
    /// Times a pool thread with nothing to run found work while it spun
    /// (io_context::options::idle_spin) and so did not block: each is an
    /// idle_wait avoided.
    std::uint64_t spin_finds = 0;
    /// The largest number of packets one dequeue call returned.
    std::uint64_t max_batch = 0;
    /// PostQueuedCompletionStatus calls (schedule, timers, wake-ups).
    std::uint64_t posts = 0;
    /// Posts the port refused; their work went to the fallback queue.
    std::uint64_t post_failures = 0;
    /// Operations that completed synchronously and resumed inline, within
    /// their turn's budget (io_context::options::inline_budget).
    std::uint64_t inline_completions = 0;
    /// Operations that completed synchronously past their turn's budget and
    /// waited in their pool thread's ready queue behind the completions
    /// already dequeued (no system call).
    std::uint64_t ready_queued = 0;
    /// Timers started: sleeps that reached the timer service (not those whose
    /// deadline had passed or whose stop was already requested).
    std::uint64_t timers_started = 0;
    /// Timers that fired at their deadline.
    std::uint64_t timers_fired = 0;
    /// Timers that completed without firing: cancelled by a stop request or by
    /// io_context::stop().
    std::uint64_t timers_cancelled = 0;
    /// WSARecv and WSARecvFrom calls (tcp_socket and udp_socket receives).
    std::uint64_t recv_calls = 0;
    /// WSASend and WSASendTo calls (tcp_socket and udp_socket sends).
    std::uint64_t send_calls = 0;
    /// AcceptEx calls (tcp_acceptor keeps a pool of them posted); on Linux,
    /// the accepts its one multishot request made (a connection each).
    std::uint64_t accept_calls = 0;
    /// ConnectEx calls (tcp_socket::connect).
    std::uint64_t connect_calls = 0;
    /// DisconnectEx calls. No portico operation issues one yet, so this stays
    /// 0.
    std::uint64_t disconnect_calls = 0;
    /// CancelIoEx calls (cancel() on a socket or file, and stop requests on
    /// pending operations).
    std::uint64_t cancel_calls = 0;
    /// ReadFile calls (random_access_file reads).
    std::uint64_t file_read_calls = 0;
    /// WriteFile calls (random_access_file writes).
    std::uint64_t file_write_calls = 0;
    /// TransmitFile calls (tcp_socket::transmit_file makes one per GiB of
    /// file begun; none when there is nothing to send).
    std::uint64_t transmit_file_calls = 0;
    /// Operations started and not yet completed, at the time of the snapshot.
    std::int64_t outstanding = 0;
    /// Threads inside run() at the time of the snapshot (pool threads, and
    /// any thread that called run() itself), each counted once it has made
    /// the state it keeps while it runs: a thread counted here allocates
    /// nothing more to start. Like outstanding, a reading, not a total.
    std::uint64_t running_threads = 0;

    /// Average packets per dequeue call (0 if none).
    [[nodiscard]] double completions_per_batch() const noexcept
    {
        return dequeue_calls == 0 ? 0.0 : static_cast<double>(completions) / static_cast<double>(dequeue_calls);
    }
    /// All Win32 I/O calls together.
    [[nodiscard]] std::uint64_t io_calls() const noexcept
    {
        return recv_calls + send_calls + accept_calls + connect_calls + disconnect_calls + cancel_calls +
               file_read_calls + file_write_calls + transmit_file_calls;
    }
};

namespace detail {

/// Index of each summed counter in a statistics block.
enum class counter : unsigned {
    dequeue_calls,
    completions,
    idle_waits,
    spin_finds,
    posts,
    post_failures,
    inline_completions,
    ready_queued,
    timers_started,
    timers_fired,
    timers_cancelled,
    recv_calls,
    send_calls,
    accept_calls,
    connect_calls,
    disconnect_calls,
    cancel_calls,
    file_read_calls,
    file_write_calls,
    transmit_file_calls,
    count_
};

/// The io_statistics field each counter is reported in, by counter index
/// (max_batch, outstanding and running_threads are kept apart: they are
/// not sums).
inline constexpr std::uint64_t io_statistics::* counter_fields[] = {
    &io_statistics::dequeue_calls,
    &io_statistics::completions,
    &io_statistics::idle_waits,
    &io_statistics::spin_finds,
    &io_statistics::posts,
    &io_statistics::post_failures,
    &io_statistics::inline_completions,
    &io_statistics::ready_queued,
    &io_statistics::timers_started,
    &io_statistics::timers_fired,
    &io_statistics::timers_cancelled,
    &io_statistics::recv_calls,
    &io_statistics::send_calls,
    &io_statistics::accept_calls,
    &io_statistics::connect_calls,
    &io_statistics::disconnect_calls,
    &io_statistics::cancel_calls,
    &io_statistics::file_read_calls,
    &io_statistics::file_write_calls,
    &io_statistics::transmit_file_calls,
};
static_assert(std::size(counter_fields) == static_cast<std::size_t>(counter::count_), "one field per counter");

} // namespace detail

PORTICO_NAMESPACE_END
