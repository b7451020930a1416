// Outbox: a thread that owns the store (group commits of enqueues, claims, settlements) and
// a relay on a strand of the caller's executor that claims windows of due events, hands them
// to destinations made per target, and settles each outcome. The store is only ever touched
// on its thread; the relay's state only on the strand.
// Here: the store's thread (group commits of enqueues) and Outbox's own functions; the relay is
// in outbox_relay.cpp, Outbox::Impl in outbox_impl.hpp.
#include <outbox/error.hpp>
#include <outbox/outbox.hpp>

#include <algorithm>

#include "core/strand_executor.hpp"
#include "core/trace_context.hpp"
#include "outbox/outbox_impl.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/prefer.hpp>

#include <stdexcept>

namespace outbox {

std::vector<std::chrono::seconds> default_retry_schedule() {
    using namespace std::chrono;
    return {seconds(5), minutes(5), minutes(30), hours(2), hours(5), hours(10), hours(10)};
}

namespace {

// A commit's bodies, at most (beyond its first event): a flush per 8 MiB still costs little,
// and it bounds what a full disk refuses at once and the room a commit needs.
constexpr std::size_t max_enqueue_batch_bytes = 8u << 20;

}  // namespace

// ---- the store's thread: everything that touches config.store runs here ----------------

Outbox::Impl::Impl(asio::any_io_executor ex, OutboxConfig cfg)
    : executor(ex),
      strand(detail::make_strand_executor(ex)),
      config(std::move(cfg)),
      wake_timer(strand),
      settle_retry_timer(strand) {
    if (config.store) guarded_store.emplace(*config.store);
}

// The executor, counting as work while something is pending on the store's thread: an
// event loop must not run out of work while an operation of ours is outstanding.
asio::any_io_executor Outbox::Impl::tracked() const {
    return asio::prefer(executor, asio::execution::outstanding_work.tracked);
}

OutboxStore& Outbox::Impl::store() {
    return *guarded_store;
}

void Outbox::Impl::post_job(std::function<void()> job) {
    {
        std::lock_guard lock(mutex);
        if (store_stopping) return;  // the relay is gone; the store keeps the events
        jobs.push_back([work = tracked(), job = std::move(job)] { job(); });
    }
    store_wakeup.notify_one();
}

void Outbox::Impl::store_loop() {
    std::deque<std::function<void()>> todo;
    std::vector<std::unique_ptr<PendingEnqueue>> batch;
    for (;;) {
        {
            std::unique_lock lock(mutex);
            const auto ready = [&] {
                return store_stopping || !jobs.empty() ||
                       (!enqueues.empty() && SteadyClock::now() >= full_until);
            };
            if (full_until > SteadyClock::now())
                store_wakeup.wait_until(lock, full_until, ready);
            else
                store_wakeup.wait(lock, ready);
            todo.swap(jobs);
            if (SteadyClock::now() >= full_until || store_stopping) {
                std::size_t batch_bytes = 0;
                while (!enqueues.empty() && batch.size() < config.max_enqueue_batch &&
                       batch_bytes < max_enqueue_batch_bytes) {
                    batch_bytes += enqueues.front()->event.message.body.size();
                    batch.push_back(std::move(enqueues.front()));
                    enqueues.pop_front();
                }
            }
            if (store_stopping && todo.empty() && batch.empty() && enqueues.empty()) return;
        }
        for (auto& job : todo) job();
        todo.clear();
        if (!batch.empty()) commit(batch);
        batch.clear();
        std::optional<asio::any_io_executor> idle;  // released after the completions went out
        {
            std::lock_guard lock(mutex);
            if (enqueues.empty()) idle.swap(enqueue_work);
        }
    }
}

// One transaction for every enqueue waiting: durability costs a flush per batch.
void Outbox::Impl::commit(std::vector<std::unique_ptr<PendingEnqueue>>& batch) {
    bool stopping = false;
    {
        std::lock_guard lock(mutex);
        stopping = store_stopping;
    }
    if (config.max_store_bytes != 0) {
        std::uint64_t size = 0;
        std::string error;
        try {
            size = store().size_bytes();
        } catch (const StoreError& e) {
            error = e.what();
        }
        if (error.empty() && size >= config.max_store_bytes) {
            std::string name;
            try {
                name = store().describe();
            } catch (const StoreError&) {  // an application's store: its name is only for the text
                name = "the store";
            }
            const std::string why = name + " holds " + std::to_string(size) +
                                    " bytes of events, its limit (max_store_bytes) is " +
                                    std::to_string(config.max_store_bytes);
            bool closed = false;
            {
                std::lock_guard lock(mutex);
                closed = !accepting;  // no relay will make room any more
            }
            if (config.fail_when_full || stopping || closed)
                return fail_all(batch, Errc::store_full, why);
            // Wait for the relay to make room: back to the front, looked at again shortly.
            std::lock_guard lock(mutex);
            for (auto it = batch.rbegin(); it != batch.rend(); ++it)
                enqueues.push_front(std::move(*it));
            full_until = SteadyClock::now() + std::chrono::milliseconds(100);
            return;
        }
    }
    std::vector<NewEvent> events;
    events.reserve(batch.size());
    for (auto& p : batch) events.push_back(std::move(p->event));
    std::vector<EventId> ids;
    try {
        store().enqueue(events, ids);
    } catch (const StoreError& e) {
        config.logger.log(LogLevel::error, std::string("outbox: enqueue failed: ") + e.what());
        return fail_all(batch, detail::store_error_code(e), e.what());
    }
    enqueued += batch.size();
    ++commits;
    // One post for the whole batch; each handler then runs on its own executor.
    auto done = std::make_shared<std::vector<std::unique_ptr<PendingEnqueue>>>(std::move(batch));
    batch.clear();
    asio::post(executor, [done, ids = std::move(ids)] {
        for (std::size_t i = 0; i < done->size(); ++i)
            asio::dispatch(asio::append(std::move((*done)[i]->handler), error_code{},
                                        EnqueueResult{ids[i], {}}));
    });
    asio::post(strand, [self = shared_from_this()] { self->on_enqueued(); });
}

void Outbox::Impl::fail_all(std::vector<std::unique_ptr<PendingEnqueue>>& batch, error_code ec,
                            const std::string& why) {
    refused += batch.size();
    for (auto& p : batch)
        asio::post(executor, asio::append(std::move(p->handler), ec, EnqueueResult{0, why}));
}

// ---- Outbox ------------------------------------------------------------------------------

Outbox::Outbox(asio::any_io_executor executor, OutboxConfig config) {
    auto require = [](bool ok, const std::string& what) {
        if (!ok) throw std::invalid_argument("Outbox: " + what);
    };
    require(config.store != nullptr, "no store (OutboxConfig::store)");
    require(!config.relay || static_cast<bool>(config.make_destination),
            "a relay needs make_destination");
    require(!config.retry_schedule.empty(), "retry_schedule is empty");
    require(config.max_in_flight >= 1 && config.claim_window >= 1 && config.max_enqueue_batch >= 1,
            "max_in_flight, claim_window and max_enqueue_batch must be at least 1");
    require(config.max_age.count() > 0 && config.max_age <= longest_retry_wait,
            "max_age must be 1 s to 36500 days");
    require(std::all_of(config.retry_schedule.begin(), config.retry_schedule.end(),
                        [](std::chrono::seconds step) {
                            return step.count() >= 0 && step <= longest_retry_wait;
                        }),
            "each step of retry_schedule must be 0 s to 36500 days");
    auto impl = std::make_shared<Impl>(executor, std::move(config));
    impl->identity = impl->store().identity();
    if (impl->config.relay) {
        impl->store().lock_for_relay();  // throws StoreError naming the other relay
        impl->store().release_claims();
        impl->forget_breakers();
        // Called from a thread of the store's: only posts.
        impl->store().watch_arrivals([weak = std::weak_ptr<Impl>(impl)] {
            if (auto self = weak.lock()) asio::post(self->strand, [self] { self->on_enqueued(); });
        });
    }
    impl->store_thread = std::thread([raw = impl.get()] { raw->store_loop(); });
    if (impl->config.relay) asio::post(impl->strand, [impl] { impl->start_relay(); });
    impl_ = std::move(impl);
}

// Breakers belong to a running relay: the store keeps them only while it runs.
void Outbox::Impl::forget_breakers() {
    try {
        store().forget_breakers();
    } catch (const StoreError& e) {
        config.logger.log(LogLevel::warning,
                          std::string("outbox: forgetting breakers: ") + e.what());
    }
}

Outbox::~Outbox() {
    impl_->shutdown();
}

Outbox::executor_type Outbox::get_executor() const noexcept {
    return impl_->executor;
}

void Outbox::set_dead_letter_handler(DeadLetterHandler handler) {
    impl_->dead_letters.set(std::move(handler));
}

OutboxStats Outbox::stats() const {
    const Impl& i = *impl_;
    return {i.enqueued.load(), i.commits.load(), i.refused.load(),  i.delivered.load(),
            i.retried.load(),  i.dead.load(),    i.in_flight.load()};
}

void Outbox::do_enqueue(std::string target, Message message, EnqueueHandler handler) {
    Impl& impl = *impl_;
    auto refuse = [&](error_code ec, std::string why) {
        ++impl.refused;
        asio::post(impl.executor,
                   asio::append(std::move(handler), ec, EnqueueResult{0, std::move(why)}));
    };
    if (target.empty()) return refuse(Errc::invalid_argument, "the event has no target");
    // No queue, topic or store's text column takes a NUL byte in these.
    for (const auto& [field, text] : {std::pair<const char*, const std::string*>{"target", &target},
                                      {"group_id", &message.group_id},
                                      {"deduplication_id", &message.deduplication_id}})
        if (text->find('\0') != std::string::npos)
            return refuse(Errc::invalid_argument,
                          std::string("the event's ") + field + " contains a NUL byte");
    // Trace context is kept as attributes (the store has no columns for it): traceparent and
    // tracestate as the attributes they are sent as, the X-Ray header under a type the relay
    // turns back into the field.
    if (std::string why = detail::trace_context_error(message);
        !why.empty() || !detail::move_trace_context_into_attributes(message, why))
        return refuse(Errc::invalid_message, std::move(why));
    detail::store_aws_trace_header(message);
    if (impl.config.validate) {
        std::string why;
        try {
            why = impl.config.validate(target, message);
        } catch (...) {
            why = "the validate function threw: " + detail::thrown_text();
        }
        if (!why.empty()) return refuse(Errc::invalid_message, std::move(why));
    }
    std::string store_refusal;
    try {
        store_refusal = impl.store().refusal(target, message);
    } catch (const StoreError& e) {
        return refuse(detail::store_error_code(e), e.what());
    }
    if (!store_refusal.empty()) return refuse(Errc::invalid_message, std::move(store_refusal));
    message.target.clear();
    bool accepted = false, wake = false;
    {
        std::lock_guard lock(impl.mutex);
        if (impl.accepting) {
            // The store's thread looks at the queue again after each batch: it needs waking
            // only when the queue was empty.
            wake = impl.enqueues.empty();
            if (!impl.enqueue_work) impl.enqueue_work.emplace(impl.tracked());
            impl.enqueues.push_back(std::make_unique<Impl::PendingEnqueue>(
                NewEvent{std::move(target), std::move(message)}, std::move(handler)));
            accepted = true;
        }
    }
    if (accepted) {
        if (wake) impl.store_wakeup.notify_one();
        return;
    }
    refuse(asio::error::operation_aborted, "the outbox is closed");
}

void Outbox::do_close(std::chrono::milliseconds deadline, CloseHandler handler) {
    asio::dispatch(impl_->strand, [impl = impl_, deadline, h = std::move(handler)]() mutable {
        impl->close(deadline, std::move(h));
    });
}

void Outbox::do_summarize(SummaryHandler handler) {
    impl_->answer_from_store(std::move(handler),
                             [](OutboxStore& store) { return store.summarize(); });
}

void Outbox::do_has_pending(FlagHandler handler) {
    impl_->answer_from_store(std::move(handler),
                             [](OutboxStore& store) { return store.has_pending(); });
}

void Outbox::do_dead_letters(std::string target, std::size_t limit, EventsHandler handler) {
    impl_->answer_from_store(std::move(handler),
                             [target = std::move(target), limit](OutboxStore& store) {
                                 return store.dead_letters(target, limit);
                             });
}

void Outbox::do_redrive(std::string target, CountHandler handler) {
    impl_->answer_from_store(
        std::move(handler), [impl = impl_, target = std::move(target)](OutboxStore& store) {
            const std::uint64_t n = store.redrive(target, std::chrono::system_clock::now());
            if (n > 0) asio::post(impl->strand, [impl] { impl->on_enqueued(); });
            return n;
        });
}

void Outbox::do_purge(std::string target, CountHandler handler) {
    impl_->answer_from_store(std::move(handler), [target = std::move(target)](OutboxStore& store) {
        return store.purge(target);
    });
}

}  // namespace outbox
