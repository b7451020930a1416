#include "core/dead_letter_slot.hpp"
#include "core/destination_counters.hpp"

#include <outbox/routing_destination.hpp>

#include <boost/asio/append.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>

#include <exception>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <unordered_map>

namespace outbox {

namespace asio = boost::asio;
using boost::system::error_code;

struct RoutingDestination::Impl {
    Impl(asio::any_io_executor ex, RoutingDestinationConfig cfg)
        : executor(std::move(ex)), config(std::move(cfg)) {}

    asio::any_io_executor executor;
    RoutingDestinationConfig config;
    // Shared with the targets' dead-letter handlers, which may outlive a failed make.
    std::shared_ptr<detail::DeadLetterSlot> dead_letters =
        std::make_shared<detail::DeadLetterSlot>();
    detail::DestinationCounters refused;  // messages that never reached a target

    mutable std::mutex mutex;  // guards the two below; never held while a target works
    std::vector<std::pair<std::string, std::unique_ptr<Destination>>> targets;  // first-seen order
    std::unordered_map<std::string, Destination*> by_name;
    bool closing = false;

    // The target's destination, made on first use; null with `why` when there is none.
    Destination* find_or_make(const std::string& target, error_code& ec, std::string& why) {
        {
            std::lock_guard lock(mutex);
            if (Destination* known = keep(target, nullptr, ec, why); known || ec) return known;
        }
        // Made outside the lock (a constructor may take a while); a racing send to the same
        // new target may make a second one, and the loser is dropped unused.
        std::unique_ptr<Destination> made;
        try {
            made = config.make_destination(target);
            if (!made) why = "make_destination returned no destination";
        } catch (const std::exception& e) {
            why = e.what();
        } catch (...) {
            why = "make_destination threw";
        }
        if (!made) {
            ec = Errc::no_route;
            why = "routing: no destination for \"" + target + "\": " + why;
            return nullptr;
        }
        made->set_dead_letter_handler([slot = dead_letters](DeadLetter&& letter) {
            if (auto handler = slot->get()) (*handler)(std::move(letter));
        });
        std::lock_guard lock(mutex);
        return keep(target, std::move(made), ec, why);
    }

    // Under the lock: the table's entry for `target`; else `made` entered in it, when the
    // router is open and has room (null `made`: only look). Run before the factory and again
    // after it, since other sends may have changed the table meanwhile.
    Destination* keep(const std::string& target, std::unique_ptr<Destination> made, error_code& ec,
                      std::string& why) {
        if (auto it = by_name.find(target); it != by_name.end()) return it->second;
        if (closing) {
            ec = asio::error::operation_aborted;
            why = "the routing destination is closed";
            return nullptr;
        }
        if (targets.size() >= config.max_destinations) {
            ec = Errc::no_route;
            why = "routing: " + std::to_string(config.max_destinations) +
                  " targets exist (max_destinations); none made for \"" + target + "\"";
            return nullptr;
        }
        if (!made) return nullptr;
        Destination* d = made.get();
        targets.emplace_back(target, std::move(made));
        by_name.emplace(target, d);
        return d;
    }

    void refuse(Message message, SendHandler handler, error_code ec, std::string why,
                std::string target) {
        refused.accepted(message.body.size());
        refused.failed();
        detail::post_refusal(executor, *dead_letters, {}, std::move(message), ec, std::move(why),
                             std::move(target), std::move(handler));
    }
};

RoutingDestination::RoutingDestination(asio::any_io_executor executor,
                                       RoutingDestinationConfig config) {
    if (!config.make_destination)
        throw std::invalid_argument("RoutingDestination: make_destination is required");
    if (config.max_destinations == 0)
        throw std::invalid_argument("RoutingDestination: max_destinations must be positive");
    impl_ = std::make_shared<Impl>(std::move(executor), std::move(config));
}

RoutingDestination::~RoutingDestination() = default;

RoutingDestination::executor_type RoutingDestination::get_executor() const noexcept {
    return impl_->executor;
}

DestinationStats RoutingDestination::stats() const {
    DestinationStats sum = impl_->refused.snapshot();
    for (auto& [target, stats] : stats_by_target()) sum += stats;
    return sum;
}

std::vector<std::pair<std::string, DestinationStats>> RoutingDestination::stats_by_target() const {
    std::vector<std::pair<std::string, Destination*>> targets;
    {
        std::lock_guard lock(impl_->mutex);
        for (auto& [name, d] : impl_->targets) targets.emplace_back(name, d.get());
    }
    std::vector<std::pair<std::string, DestinationStats>> out;
    out.reserve(targets.size());
    for (auto& [name, d] : targets) out.emplace_back(name, d->stats());
    return out;
}

std::size_t RoutingDestination::target_count() const {
    std::lock_guard lock(impl_->mutex);
    return impl_->targets.size();
}

void RoutingDestination::set_dead_letter_handler(DeadLetterHandler handler) {
    impl_->dead_letters->set(std::move(handler));
}

void RoutingDestination::do_send(Message message, SendHandler handler) {
    Impl& impl = *impl_;
    std::string target;
    try {
        target = impl.config.route ? impl.config.route(message) : message.target;
    } catch (const std::exception& e) {
        return impl.refuse(std::move(message), std::move(handler), Errc::no_route,
                           std::string("routing: the route function threw: ") + e.what(), {});
    } catch (...) {
        return impl.refuse(std::move(message), std::move(handler), Errc::no_route,
                           "routing: the route function threw", {});
    }
    if (target.empty())
        return impl.refuse(std::move(message), std::move(handler), Errc::no_route,
                           impl.config.route
                               ? "routing: the route function named no target"
                               : "routing: the message has no target (Message::target)",
                           {});
    error_code ec;
    std::string why;
    Destination* d = impl.find_or_make(target, ec, why);
    if (!d)
        return impl.refuse(std::move(message), std::move(handler), ec, std::move(why),
                           std::move(target));
    d->async_send(std::move(message), std::move(handler));
}

void RoutingDestination::do_close(std::chrono::milliseconds deadline, CloseHandler handler) {
    std::vector<Destination*> targets;
    {
        std::lock_guard lock(impl_->mutex);
        impl_->closing = true;
        for (auto& [name, d] : impl_->targets) targets.push_back(d.get());
    }
    if (targets.empty()) {
        asio::post(impl_->executor, asio::append(std::move(handler), error_code{}));
        return;
    }
    // The targets complete on their own executors, maybe on several threads at once.
    struct Closing {
        std::mutex mutex;
        std::size_t left;
        error_code first_error;
        std::optional<CloseHandler> handler;
    };
    auto closing = std::make_shared<Closing>();
    closing->left = targets.size();
    closing->handler.emplace(std::move(handler));
    for (Destination* d : targets)
        d->async_close(deadline, [closing](error_code ec) {
            std::optional<CloseHandler> done;
            error_code result;
            {
                std::lock_guard lock(closing->mutex);
                if (ec && !closing->first_error) closing->first_error = ec;
                if (--closing->left != 0) return;
                done.emplace(std::move(*closing->handler));
                result = closing->first_error;
            }
            asio::dispatch(asio::append(std::move(*done), result));
        });
}

}  // namespace outbox
