// The Outbox's view of its store: every call of an application's OutboxStore (or of ours, out
// of memory) that throws anything but StoreError throws a StoreError instead. The Outbox
// handles StoreError on its store thread and its strand; anything else escaping there would
// end the process (std::terminate) or leave an enqueue unanswered. Private to the library.
#pragma once

#include "core/thrown_text.hpp"

#include <outbox/outbox_store.hpp>

#include <utility>

namespace outbox::detail {

// Calls `call`; anything it throws but a StoreError comes out as one.
template <class Call>
decltype(auto) guard(Call&& call) {
    try {
        return std::forward<Call>(call)();
    } catch (const StoreError&) {
        throw;
    } catch (...) {
        throw StoreError(StoreError::Kind::io, "the store threw: " + thrown_text());
    }
}

class GuardedStore final : public OutboxStore {
  public:
    explicit GuardedStore(OutboxStore& inner) : inner_(inner) {}

    std::string describe() const override {
        return guard([&] { return inner_.describe(); });
    }
    std::string identity() const override {
        return guard([&] { return inner_.identity(); });
    }
    std::string refusal(const std::string& target, const Message& message) const override {
        return guard([&] { return inner_.refusal(target, message); });
    }
    void enqueue(std::span<const NewEvent> events, std::vector<EventId>& ids) override {
        guard([&] { inner_.enqueue(events, ids); });
    }
    std::vector<StoredEvent> claim(SystemTime now, std::size_t limit,
                                   const TargetBound& targets) override {
        return guard([&] { return inner_.claim(now, limit, targets); });
    }
    void settle(std::span<const EventOutcome> outcomes) override {
        guard([&] { inner_.settle(outcomes); });
    }
    void release_claims() override {
        guard([&] { inner_.release_claims(); });
    }
    void renew_claims(SystemTime now) override {
        guard([&] { inner_.renew_claims(now); });
    }
    void lock_for_relay() override {
        guard([&] { inner_.lock_for_relay(); });
    }
    void watch_arrivals(std::function<void()> on_arrival) override {
        guard([&] { inner_.watch_arrivals(std::move(on_arrival)); });
    }
    std::optional<SystemTime> next_due() override {
        return guard([&] { return inner_.next_due(); });
    }
    std::optional<StoredEvent> find(EventId id) override {
        return guard([&] { return inner_.find(id); });
    }
    bool has_pending() override {
        return guard([&] { return inner_.has_pending(); });
    }
    std::vector<TargetSummary> summarize() override {
        return guard([&] { return inner_.summarize(); });
    }
    void save_breaker(const TargetBreakerState& state) override {
        guard([&] { inner_.save_breaker(state); });
    }
    void forget_breakers() override {
        guard([&] { inner_.forget_breakers(); });
    }
    std::vector<StoredEvent> dead_letters(const std::string& target, std::size_t limit) override {
        return guard([&] { return inner_.dead_letters(target, limit); });
    }
    std::uint64_t redrive(const std::string& target, SystemTime now) override {
        return guard([&] { return inner_.redrive(target, now); });
    }
    std::uint64_t purge(const std::string& target) override {
        return guard([&] { return inner_.purge(target); });
    }
    std::uint64_t size_bytes() override {
        return guard([&] { return inner_.size_bytes(); });
    }

  private:
    OutboxStore& inner_;
};

}  // namespace outbox::detail
