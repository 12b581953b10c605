// portico: one io_uring instance through the kernel interface (no liburing):
// its setup, submission and completions (shared under locks, or owned by one
// thread), and synchronous cancels from any thread.
#pragma once

#include <portico/config.hpp>

#include <linux/io_uring.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <system_error>
#include <utility>

#if defined(__SANITIZE_THREAD__)
#define PORTICO_DETAIL_URING_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PORTICO_DETAIL_URING_TSAN 1
#endif
#endif
#if defined(PORTICO_DETAIL_URING_TSAN)
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
#endif

PORTICO_NAMESPACE_BEGIN

namespace detail::uring {

/// What ThreadSanitizer cannot see: the kernel orders each submission before
/// the completion it produces. Without these a request's fields, written by
/// the submitter and read by whichever thread takes the completion, look
/// like a race. Nothing without TSan.
inline void ordered_before_completions([[maybe_unused]] void* ring) noexcept
{
#if defined(PORTICO_DETAIL_URING_TSAN)
    __tsan_release(ring);
#endif
}
inline void ordered_after_submissions([[maybe_unused]] void* ring) noexcept
{
#if defined(PORTICO_DETAIL_URING_TSAN)
    __tsan_acquire(ring);
#endif
}

/// What a completion says: the request's user_data, its result (a byte
/// count, or minus an errno value) and its IORING_CQE_F_* flags.
struct completion {
    std::uint64_t user_data;
    std::int32_t result;
    std::uint32_t flags;
};

/// Why a ring could not be made, in words a user can act on: `error` is the
/// errno value io_uring_setup returned.
inline std::string setup_failure_message(int error)
{
    std::string what = "io_uring_setup: " + std::system_category().message(error);
    if (error == ENOSYS) {
        what += ". This kernel has no io_uring (built without CONFIG_IO_URING, or older than Linux 5.1)";
    } else if (error == EPERM || error == EACCES) {
        what += ". The system refuses io_uring to this process: a container's seccomp profile (Docker's default "
                "blocks it; run with a profile that allows io_uring_setup, io_uring_enter and "
                "io_uring_register), or the sysctl kernel.io_uring_disabled (set it to 0, or to 1 and add the user to "
                "kernel.io_uring_group)";
    } else if (error == ENOMEM) {
        what += ". Not enough locked memory for the ring (raise RLIMIT_MEMLOCK, or use a kernel from 5.12 on, "
                "which charges rings to the memory cgroup instead)";
    }
    return what;
}

/// One io_uring instance, used in either of two ways.
///
/// Shared: submit() fills one entry and enters the kernel, under a lock, so
/// any thread may submit at any time; take() copies the completions ready
/// now, under a second lock, so any number of threads may wait() and take()
/// at once, and each completion goes to exactly one taker. (The
/// scheduler's wake-up ring, the benchmark's shared ring.)
///
/// Owned: one thread submits and takes, with no lock. Either one system
/// call a request (submit_owned(), as submit()), or requests queued
/// (queue_owned()) and submitted together (enter_owned()): a pool thread's
/// own ring in the scheduler, which queues a turn's requests and submits
/// them with its wait. Completions with take_owned(). The ways never mix on
/// one ring.
///
/// Thread safety: submit_owned(), queue_owned(), enter_owned(),
/// unsubmitted(), submitted_position(), user_data_at() and take_owned()
/// from the owning thread only; wait() by a taker; every other member from
/// any thread.
class ring {
public:
    /// Entries of the submission queue of a shared ring: submit() enters the
    /// kernel for every entry, so more than a few are never pending at once.
    static constexpr unsigned submission_entries = 64;
    /// Entries of the submission queue of an owned ring that queues requests
    /// (queue_owned) and submits them together (enter_owned): room for a
    /// turn's requests, so a full queue is rare.
    static constexpr unsigned queued_submission_entries = 256;
    /// Entries of the completion queue. The kernel keeps completions past
    /// this (IORING_FEAT_NODROP), so it bounds a batch, not the work.
    static constexpr unsigned completion_entries = 4096;

    /// Makes the ring, with room for `entries` submissions. Throws
    /// std::system_error whose message says why the system refused and what
    /// to do (setup_failure_message()).
    explicit ring(unsigned entries = submission_entries)
    {
        io_uring_params params{};
        // NOTE: cooperative task running (Linux 5.19): the kernel finishes a
        // request that needs the submitting thread (a receive whose data
        // came) the next time that thread enters the kernel, which a pool
        // thread does for every request and every wait, instead of
        // interrupting it with an inter-processor interrupt. TASKRUN_FLAG
        // says when such work waits, for a taker that finds no completion
        // (take_owned).
        // SUBMIT_ALL (Linux 5.18): a batch whose request fails at submission
        // (its completion says so) still submits the requests after it, so
        // enter_owned() never leaves a batch half taken for that.
        params.flags = IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP | IORING_SETUP_COOP_TASKRUN |
                       IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_SUBMIT_ALL;
        params.cq_entries = completion_entries;
        const long fd = ::syscall(__NR_io_uring_setup, entries, &params);
        if (fd < 0) {
            const int error = errno;
            throw std::system_error(error, std::system_category(), setup_failure_message(error));
        }
        fd_ = static_cast<int>(fd);
        // NOTE: both features came with Linux 5.5; without them a completion
        // could be dropped, and the two rings would need two mappings.
        if ((params.features & IORING_FEAT_NODROP) == 0 || (params.features & IORING_FEAT_SINGLE_MMAP) == 0) {
            ::close(fd_);
            throw std::system_error(ENOSYS, std::system_category(),
                                    "io_uring_setup: this kernel's io_uring is too old (Linux 6.0 or later is needed)");
        }
        sq_entries_ = params.sq_entries;
        cq_entries_ = params.cq_entries;
        const std::size_t sq_size = params.sq_off.array + params.sq_entries * sizeof(std::uint32_t);
        const std::size_t cq_size = params.cq_off.cqes + params.cq_entries * sizeof(io_uring_cqe);
        rings_size_ = sq_size > cq_size ? sq_size : cq_size;
        rings_ =
            ::mmap(nullptr, rings_size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd_, IORING_OFF_SQ_RING);
        if (rings_ == MAP_FAILED) fail_setup("mmap of the io_uring rings");
        sqes_size_ = params.sq_entries * sizeof(io_uring_sqe);
        sqes_ = static_cast<io_uring_sqe*>(
            ::mmap(nullptr, sqes_size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd_, IORING_OFF_SQES));
        if (sqes_ == MAP_FAILED) {
            ::munmap(rings_, rings_size_);
            fail_setup("mmap of the io_uring submission entries");
        }
        auto* base = static_cast<unsigned char*>(rings_);
        sq_flags_ = reinterpret_cast<std::uint32_t*>(base + params.sq_off.flags);
        sq_head_ = reinterpret_cast<std::uint32_t*>(base + params.sq_off.head);
        sq_tail_ = reinterpret_cast<std::uint32_t*>(base + params.sq_off.tail);
        sq_mask_ = *reinterpret_cast<std::uint32_t*>(base + params.sq_off.ring_mask);
        sq_array_ = reinterpret_cast<std::uint32_t*>(base + params.sq_off.array);
        cq_head_ = reinterpret_cast<std::uint32_t*>(base + params.cq_off.head);
        cq_tail_ = reinterpret_cast<std::uint32_t*>(base + params.cq_off.tail);
        cq_mask_ = *reinterpret_cast<std::uint32_t*>(base + params.cq_off.ring_mask);
        cqes_ = reinterpret_cast<io_uring_cqe*>(base + params.cq_off.cqes);
        if (!cancels_by_descriptor()) {
            ::munmap(sqes_, sqes_size_);
            ::munmap(rings_, rings_size_);
            ::close(fd_);
            throw std::system_error(ENOSYS, std::system_category(),
                                    "io_uring: this kernel cannot cancel a socket's requests by descriptor from any "
                                    "thread, which closing a socket needs (Linux 6.0 or later is needed)");
        }
    }

    ring(const ring&) = delete;
    ring& operator=(const ring&) = delete;

    ~ring()
    {
        ::munmap(sqes_, sqes_size_);
        ::munmap(rings_, rings_size_);
        ::close(fd_);
    }

    /// Submits one request: `fill` writes its fields into a zeroed entry.
    /// Returns an error if the kernel did not take it (the entry is then
    /// withdrawn, and no completion will come for it): EBUSY or EAGAIN
    /// when it has no room for now, ENOMEM, or what the request's setup
    /// refused.
    template <class Fill>
    [[nodiscard]] std::error_code submit(Fill&& fill) noexcept
    {
        std::lock_guard lock(submit_mutex_);
        return submit_owned(std::forward<Fill>(fill));
    }

    /// As submit(), without the lock: for a ring with one submitting thread
    /// (the scheduler's ring of one pool thread), which calls only this.
    template <class Fill>
    [[nodiscard]] std::error_code submit_owned(Fill&& fill) noexcept
    {
        const std::uint32_t tail = append(fill);
        for (;;) {
            const long taken = ::syscall(__NR_io_uring_enter, fd_, 1u, 0u, 0u, nullptr, 0);
            if (taken == 1) return {};
            const int error = taken < 0 ? errno : EAGAIN;
            if (taken < 0 && error == EINTR) continue;
            // NOTE: the kernel reads the queue only inside io_uring_enter,
            // which only the one submitter calls, so an entry it left is
            // withdrawn by putting the tail back.
            if (std::atomic_ref<std::uint32_t>(*sq_head_).load(std::memory_order_acquire) == tail) {
                std::atomic_ref<std::uint32_t>(*sq_tail_).store(tail, std::memory_order_release);
            }
            return {error, std::system_category()};
        }
    }

    /// Queues one request on an owned ring without entering the kernel:
    /// `fill` writes its fields into a zeroed entry, and the next
    /// enter_owned() submits it with every other queued one. Returns false,
    /// queueing nothing, when the queue is full. Until it is submitted the
    /// kernel does not know the request: a cancel cannot find it
    /// (scheduler.hpp says how the scheduler copes).
    template <class Fill>
    [[nodiscard]] bool queue_owned(Fill&& fill) noexcept
    {
        if (*sq_tail_ - submitted_ == sq_entries_) return false;
        (void)append(fill);
        return true;
    }

    /// Requests queue_owned() queued that the kernel has not taken yet.
    [[nodiscard]] std::uint32_t unsubmitted() const noexcept { return *sq_tail_ - submitted_; }

    /// The queue position after the last request the kernel took (positions
    /// count every request ever queued, wrapping round).
    [[nodiscard]] std::uint32_t submitted_position() const noexcept { return submitted_; }

    /// The user_data of the request queued at `position`: for one the kernel
    /// has taken, until queue_owned() writes that entry again.
    [[nodiscard]] std::uint64_t user_data_at(std::uint32_t position) const noexcept
    {
        return sqes_[position & sq_mask_].user_data;
    }

    /// Enters the kernel once on an owned ring: submits every queued request
    /// and, if `min_complete` is not 0, waits until that many completions
    /// are ready (the two in one system call, as liburing's submit_and_wait).
    /// Returns 0, or the kernel's errno value: then some or none of the
    /// queued requests were taken (EAGAIN, ENOMEM, EBUSY: try again later),
    /// or the wait was interrupted (EINTR). unsubmitted() says what is left.
    int enter_owned(unsigned min_complete) noexcept
    {
        // Counted before: a call that waits counts from its start (tests).
        enters_.store(enters_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        const long result =
            ::syscall(__NR_io_uring_enter, fd_, unsubmitted(), min_complete, IORING_ENTER_GETEVENTS, nullptr, 0);
        const int error = result < 0 ? errno : 0;
        // NOTE: the kernel's head says what it took, whatever the result
        // (it may take some, then fail or be interrupted).
        submitted_ = std::atomic_ref<std::uint32_t>(*sq_head_).load(std::memory_order_acquire);
        return error;
    }

    /// Times enter_owned() entered the kernel (tests: submissions batched).
    [[nodiscard]] std::uint64_t enters() const noexcept { return enters_.load(std::memory_order_relaxed); }

    /// Blocks until at least one completion is ready or the wait is
    /// interrupted (a signal); returns at once if one is ready already.
    void wait() noexcept
    {
        if (ready() != 0) return;
        (void)::syscall(__NR_io_uring_enter, fd_, 0u, 1u, IORING_ENTER_GETEVENTS, nullptr, 0);
    }

    /// Completions ready now (a snapshot).
    [[nodiscard]] std::uint32_t ready() const noexcept
    {
        const std::uint32_t tail = std::atomic_ref<std::uint32_t>(*cq_tail_).load(std::memory_order_acquire);
        const std::uint32_t head = std::atomic_ref<std::uint32_t>(*cq_head_).load(std::memory_order_relaxed);
        return tail - head;
    }

    /// Whether completions wait to be taken: in the queue, or in the kernel
    /// until a call into it (take_owned() makes that call). A snapshot,
    /// without a system call.
    [[nodiscard]] bool completions_waiting() const noexcept
    {
        return ready() != 0 ||
               (std::atomic_ref<std::uint32_t>(*sq_flags_).load(std::memory_order_relaxed) & waiting_in_kernel) != 0;
    }

    /// Copies up to `max` ready completions into `out` and hands their slots
    /// back to the kernel; returns how many. Never blocks.
    std::size_t take(completion* out, std::size_t max) noexcept
    {
        std::lock_guard lock(take_mutex_);
        return take_owned(out, max);
    }

    /// As take(), without the lock: for a ring with one taking thread,
    /// which calls only this.
    std::size_t take_owned(completion* out, std::size_t max) noexcept
    {
        std::uint32_t head = *cq_head_; // only the one taker writes it
        // RACE: acquire pairs with the kernel's release of the tail, so the
        // entries below it are complete when read.
        std::uint32_t tail = std::atomic_ref<std::uint32_t>(*cq_tail_).load(std::memory_order_acquire);
        // NOTE: completions past a full queue wait in the kernel's overflow
        // list, and those of requests the kernel finishes on this thread's
        // behalf wait as its task work (COOP_TASKRUN): only a call into the
        // kernel moves either to the queue, and without it a taker that
        // never waits would never see them.
        if (head == tail &&
            (std::atomic_ref<std::uint32_t>(*sq_flags_).load(std::memory_order_relaxed) & waiting_in_kernel) != 0) {
            (void)::syscall(__NR_io_uring_enter, fd_, 0u, 0u, IORING_ENTER_GETEVENTS, nullptr, 0);
            tail = std::atomic_ref<std::uint32_t>(*cq_tail_).load(std::memory_order_acquire);
        }
        std::size_t n = 0;
        for (; head != tail && n < max; ++head, ++n) {
            const io_uring_cqe& cqe = cqes_[head & cq_mask_];
            out[n] = completion{cqe.user_data, cqe.res, cqe.flags};
        }
        if (n != 0) ordered_after_submissions(this);
        // Release: the slots are read before the kernel may overwrite them.
        std::atomic_ref<std::uint32_t>(*cq_head_).store(head, std::memory_order_release);
        return n;
    }

    /// Asks the kernel to cancel the request whose user_data is `user_data`,
    /// synchronously (IORING_REGISTER_SYNC_CANCEL), without waiting for a
    /// request already running in a kernel worker: it completes with
    /// ECANCELED, or as it was about to if it won. Any thread, with no lock
    /// of ours: the kernel takes the ring's own lock, and nothing goes
    /// through the submission queue, which stays its one submitter's.
    /// Returns the kernel's answer (ENOENT: nothing matched).
    std::error_code cancel(std::uint64_t user_data) noexcept
    {
        io_uring_sync_cancel_reg request{};
        request.addr = user_data;
        return sync_cancel(request);
    }

    /// As cancel(), for every request on descriptor `fd`.
    std::error_code cancel_all_on(int fd) noexcept
    {
        io_uring_sync_cancel_reg request{};
        request.fd = fd;
        request.flags = IORING_ASYNC_CANCEL_FD | IORING_ASYNC_CANCEL_ALL;
        return sync_cancel(request);
    }

    /// Requests the kernel has taken so far (each submit() that succeeded,
    /// each request an enter_owned() submitted), modulo 2^32: the kernel's
    /// own count, which it updates as it takes them, before any wait of the
    /// same call (tests: "the kernel holds it").
    [[nodiscard]] std::uint64_t submissions() const noexcept
    {
        const std::uint32_t taken = std::atomic_ref<std::uint32_t>(*sq_head_).load(std::memory_order_acquire);
        // The kernel took them, so they were queued before: what their
        // submitters did before queueing them happened before this returns.
        ordered_after_submissions(const_cast<ring*>(this));
        return taken;
    }

    [[nodiscard]] int fd() const noexcept { return fd_; }
    [[nodiscard]] unsigned sq_entries() const noexcept { return sq_entries_; }
    [[nodiscard]] unsigned cq_entries() const noexcept { return cq_entries_; }

private:
    /// The submission queue's flags that say completions wait in the kernel
    /// (past a full queue, or as task work: take_owned() says more).
    static constexpr std::uint32_t waiting_in_kernel = IORING_SQ_CQ_OVERFLOW | IORING_SQ_TASKRUN;
    /// Whether the kernel cancels synchronously, from any thread, by
    /// descriptor and all at once (IORING_REGISTER_SYNC_CANCEL with
    /// IORING_ASYNC_CANCEL_FD | _ALL: Linux 6.0): asked of the ring's own
    /// descriptor, which has no requests, so a kernel that knows it answers
    /// "none cancelled" and an older one EINVAL.
    bool cancels_by_descriptor() noexcept { return cancel_all_on(fd_) != std::errc::invalid_argument; }

    /// Fills the entry at the tail and publishes it; returns the tail it
    /// was written at. The one submitter only.
    template <class Fill>
    std::uint32_t append(Fill& fill) noexcept
    {
        const std::uint32_t tail = *sq_tail_; // only the one submitter writes it
        const std::uint32_t index = tail & sq_mask_;
        io_uring_sqe* sqe = &sqes_[index];
        std::memset(sqe, 0, sizeof *sqe);
        fill(*sqe);
        sq_array_[index] = index;
        ordered_before_completions(this);
        // RACE: the entry must be complete before the kernel can see the new
        // tail; release pairs with its acquire of the tail.
        std::atomic_ref<std::uint32_t>(*sq_tail_).store(tail + 1, std::memory_order_release);
        return tail;
    }

    std::error_code sync_cancel(io_uring_sync_cancel_reg& request) noexcept
    {
        // NOTE: a zero timeout: a request a kernel worker is running right
        // now is told to stop, not waited for (ETIME then), as a cancel
        // only asks everywhere else in portico.
        request.timeout.tv_sec = 0;
        request.timeout.tv_nsec = 0;
        for (;;) {
            if (::syscall(__NR_io_uring_register, fd_, IORING_REGISTER_SYNC_CANCEL, &request, 1) >= 0) return {};
            if (errno != EINTR) return {errno, std::system_category()};
        }
    }

    [[noreturn]] void fail_setup(const char* what)
    {
        const int error = errno;
        ::close(fd_);
        throw std::system_error(error, std::system_category(), what);
    }

    int fd_ = -1;
    unsigned sq_entries_ = 0;
    unsigned cq_entries_ = 0;
    void* rings_ = nullptr;
    std::size_t rings_size_ = 0;
    io_uring_sqe* sqes_ = nullptr;
    std::size_t sqes_size_ = 0;
    std::uint32_t* sq_flags_ = nullptr;
    std::uint32_t* sq_head_ = nullptr;
    std::uint32_t* sq_tail_ = nullptr;
    std::uint32_t sq_mask_ = 0;
    std::uint32_t* sq_array_ = nullptr;
    std::uint32_t* cq_head_ = nullptr;
    std::uint32_t* cq_tail_ = nullptr;
    std::uint32_t cq_mask_ = 0;
    io_uring_cqe* cqes_ = nullptr;
    std::mutex submit_mutex_;
    std::uint32_t submitted_ = 0;          // queue position the kernel took up to (owned, queued use)
    std::atomic<std::uint64_t> enters_{0}; // written by the owner
    std::mutex take_mutex_;
};

} // namespace detail::uring

PORTICO_NAMESPACE_END

#undef PORTICO_DETAIL_URING_TSAN
