#include <outbox/credentials_providers.hpp>
#include "aws/profile_file.hpp"

#include "aws/credentials/credentials_common.hpp"
#include "core/bounded_file.hpp"
#include "core/strand_executor.hpp"

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <optional>

namespace outbox {
namespace {

namespace asio = boost::asio;
using boost::system::error_code;
using detail::complete_later;
using detail::CredentialsHandler;
using detail::env;

class StaticProvider final : public CredentialsProvider {
  public:
    StaticProvider(asio::any_io_executor ex, Credentials c)
        : ex_(std::move(ex)), credentials_(std::move(c)) {}
    std::string name() const override { return "static"; }
    bool credentials_at_hand(Credentials& out) override {
        if (credentials_.empty()) return false;
        out = credentials_;
        return true;
    }

  protected:
    void do_get_credentials(Handler h) override {
        if (credentials_.empty())
            return complete_later(ex_, std::move(h), Errc::missing_credentials, {});
        complete_later(ex_, std::move(h), {}, credentials_);
    }

  private:
    asio::any_io_executor ex_;
    Credentials credentials_;
};

class EnvironmentProvider final : public CredentialsProvider {
  public:
    explicit EnvironmentProvider(asio::any_io_executor ex) : ex_(std::move(ex)) {}
    std::string name() const override { return "environment"; }
    bool credentials_at_hand(Credentials& out) override {
        read(out);
        return !out.empty();
    }

  protected:
    void do_get_credentials(Handler h) override {
        Credentials c;
        read(c);
        if (c.access_key_id.empty() && c.secret_access_key.empty())
            return complete_later(ex_, std::move(h), Errc::credentials_not_found, {});
        if (c.empty()) return complete_later(ex_, std::move(h), Errc::missing_credentials, {});
        complete_later(ex_, std::move(h), {}, std::move(c));
    }

  private:
    // Read at each call: a process may set them after the provider is made. Assigned in
    // place (not through detail::env's copies), so a sender's reused Credentials keeps its room.
    static void read(Credentials& out) {
        auto assign = [](std::string& to, const char* name) {
            const char* v = std::getenv(name);
            to.assign(v != nullptr ? v : "");
        };
        assign(out.access_key_id, "AWS_ACCESS_KEY_ID");
        assign(out.secret_access_key, "AWS_SECRET_ACCESS_KEY");
        assign(out.session_token, "AWS_SESSION_TOKEN");
        out.expiration.reset();
    }

    asio::any_io_executor ex_;
};

std::string home_file(const char* relative) {
    const auto home = env("HOME");
    return home ? *home + "/" + relative : std::string();
}

class ProfileProvider final : public CredentialsProvider {
  public:
    ProfileProvider(asio::any_io_executor ex, ProfileOptions o)
        : ex_(std::move(ex)), options_(std::move(o)) {}
    std::string name() const override { return "profile \"" + profile() + "\""; }

  protected:
    void do_get_credentials(Handler h) override {
        Credentials c;
        const error_code ec = load(c);
        complete_later(ex_, std::move(h), ec, std::move(c));
    }

  private:
    std::string profile() const {
        if (!options_.profile.empty()) return options_.profile;
        return env("AWS_PROFILE").value_or("default");
    }

    error_code load(Credentials& out) const {
        const std::string name = profile();
        const std::string credentials_path =
            !options_.credentials_file.empty()
                ? options_.credentials_file
                : env("AWS_SHARED_CREDENTIALS_FILE").value_or(home_file(".aws/credentials"));
        const std::string config_path =
            !options_.config_file.empty()
                ? options_.config_file
                : env("AWS_CONFIG_FILE").value_or(home_file(".aws/config"));
        std::string credentials_text, config_text;
        for (auto [path, text] : {std::pair{&credentials_path, &credentials_text},
                                  std::pair{&config_path, &config_text}}) {
            std::string why;
            if (path->empty() || detail::read_bounded_file(*path, detail::max_config_file_bytes,
                                                           *text, why) != detail::FileRead::refused)
                continue;
            options_.logger.log(LogLevel::error,
                                "cannot read the AWS profile file " + *path + ": " + why);
            return Errc::unreadable_profile_file;
        }
        const auto credentials_sections = detail::parse_profile_file(credentials_text);
        const auto config_sections = detail::parse_profile_file(config_text);

        const std::map<std::string, std::string>* sections[2] = {nullptr, nullptr};
        if (auto it = credentials_sections.find(name); it != credentials_sections.end())
            sections[0] = &it->second;
        for (const std::string& key :
             {"profile " + name, name == "default" ? name : std::string()}) {
            if (key.empty() || sections[1] != nullptr) continue;
            if (auto it = config_sections.find(key); it != config_sections.end())
                sections[1] = &it->second;
        }
        if (!sections[0] && !sections[1]) return Errc::credentials_not_found;
        for (const auto* s : sections) {
            if (s == nullptr || !s->contains("aws_access_key_id")) continue;
            auto value = [s](const char* k) {
                auto it = s->find(k);
                return it == s->end() ? std::string() : it->second;
            };
            out.access_key_id = value("aws_access_key_id");
            out.secret_access_key = value("aws_secret_access_key");
            out.session_token = value("aws_session_token");
            return out.empty() ? error_code(Errc::missing_credentials) : error_code();
        }
        for (const auto* s : sections) {
            if (s == nullptr) continue;
            for (const char* k : {"role_arn", "credential_process", "sso_session", "sso_start_url",
                                  "web_identity_token_file"})
                if (s->contains(k)) return Errc::unsupported_profile;
        }
        return Errc::credentials_not_found;
    }

    asio::any_io_executor ex_;
    ProfileOptions options_;
};

class ChainProvider final : public CredentialsProvider,
                            public std::enable_shared_from_this<ChainProvider> {
  public:
    ChainProvider(asio::any_io_executor ex, std::vector<CredentialsProviderPtr> providers,
                  Logger logger)
        : executor_(ex),
          strand_(detail::make_strand_executor(ex)),
          providers_(std::move(providers)),
          logger_(std::move(logger)) {}
    // The sources it tries, in order: what a "no credentials found" message lists.
    std::string name() const override {
        std::string names;
        for (const auto& p : providers_) names += (names.empty() ? "" : ", ") + p->name();
        return names;
    }
    // The provider that worked last, which the next round would ask first.
    bool credentials_at_hand(Credentials& out) override {
        const std::size_t good = last_good_.load(std::memory_order_relaxed);
        return good < providers_.size() && providers_[good]->credentials_at_hand(out);
    }

  protected:
    void do_get_credentials(Handler h) override {
        asio::dispatch(strand_, [self = shared_from_this(), h = std::move(h)]() mutable {
            const std::size_t n = self->providers_.size();
            const std::size_t good = self->last_good_.load(std::memory_order_relaxed);
            self->try_next(std::move(h), good < n ? good : 0, n, {});
        });
    }

  private:
    // Asks providers[index], then the next ones in order (wrapping), `remaining` in all.
    // The round starts at the provider that worked last time.
    void try_next(Handler h, std::size_t index, std::size_t remaining, error_code first_error) {
        if (remaining == 0) {
            return complete_later(
                executor_, std::move(h),
                first_error ? first_error : error_code(Errc::credentials_not_found), {});
        }
        const CredentialsProviderPtr p = providers_[index];
        // Kept apart from the callback: should the provider throw (an application's may), the
        // handler is still here and the round goes on to the next provider.
        auto held = std::make_shared<std::optional<Handler>>(std::move(h));
        try {
            p->async_get_credentials(asio::bind_executor(
                strand_, [self = shared_from_this(), held, index, remaining, first_error, p](
                             error_code ec, Credentials c) mutable {
                    if (!*held) return;
                    Handler caller = std::move(**held);
                    held->reset();
                    self->answered(std::move(caller), p, index, remaining, first_error, ec,
                                   std::move(c));
                }));
        } catch (...) {
            if (!*held) throw;  // it answered, then threw: nothing left to do here
            Handler again = std::move(**held);
            held->reset();
            logger_.log(LogLevel::debug, p->name() + " threw: " + detail::thrown_text());
            asio::post(strand_, [self = shared_from_this(), again = std::move(again), index,
                                 remaining, first_error]() mutable {
                self->try_next(std::move(again), (index + 1) % self->providers_.size(),
                               remaining - 1, first_error);
            });
        }
    }

    // On strand_: providers[index]'s answer; the next one is asked when it had none.
    void answered(Handler h, const CredentialsProviderPtr& p, std::size_t index,
                  std::size_t remaining, error_code first_error, error_code ec, Credentials c) {
        if (!ec) {
            logger_.log(LogLevel::debug, "credentials from " + p->name());
            last_good_.store(index, std::memory_order_relaxed);
            return complete_later(executor_, std::move(h), {}, std::move(c));
        }
        logger_.log(LogLevel::debug, p->name() + ": " + ec.message());
        if (!first_error && ec != Errc::credentials_not_found) first_error = ec;
        try_next(std::move(h), (index + 1) % providers_.size(), remaining - 1, first_error);
    }

    asio::any_io_executor executor_;  // the caller's, where handlers complete
    asio::any_io_executor strand_;
    std::vector<CredentialsProviderPtr> providers_;
    Logger logger_;
    std::atomic<std::size_t> last_good_{static_cast<std::size_t>(-1)};  // written on strand_
};

class CachingProvider final : public CredentialsProvider,
                              public std::enable_shared_from_this<CachingProvider> {
  public:
    CachingProvider(asio::any_io_executor ex, CredentialsProviderPtr inner, CachingOptions options)
        : executor_(ex),
          strand_(detail::make_strand_executor(ex)),
          inner_(std::move(inner)),
          options_(std::move(options)) {
        if (!options_.clock) options_.clock = [] { return std::chrono::system_clock::now(); };
    }
    std::string name() const override { return inner_->name(); }
    // Only credentials that need no refresh: otherwise the asynchronous call starts one.
    bool credentials_at_hand(Credentials& out) override {
        const TimePoint now = options_.clock();
        std::lock_guard lock(cached_mutex_);
        if (!fresh(now)) return false;
        out = *cached_;
        return true;
    }

  protected:
    void do_get_credentials(Handler h) override {
        asio::dispatch(strand_, [self = shared_from_this(), h = std::move(h)]() mutable {
            self->serve(std::move(h));
        });
    }

  private:
    using TimePoint = std::chrono::system_clock::time_point;

    bool fresh(TimePoint now) const {
        return cached_ && (!cached_->expiration ||
                           now < *cached_->expiration - options_.refresh_before_expiry);
    }
    bool valid(TimePoint now) const {
        return cached_ && (!cached_->expiration || now < *cached_->expiration);
    }

    void serve(Handler h) {
        const TimePoint now = options_.clock();
        if (fresh(now)) return complete_later(executor_, std::move(h), {}, *cached_);
        if (valid(now)) {
            // Close to expiry: keep serving these while one refresh runs in the background.
            if (!refreshing_ && now >= retry_not_before_) refresh();
            return complete_later(executor_, std::move(h), {}, *cached_);
        }
        // Nothing to serve and the last fetch failed moments ago: its error at once, so a
        // source that refuses (a role's trust policy, a wrong ExternalId) is not asked again
        // for every message.
        if (!refreshing_ && last_failure_ && now < retry_not_before_)
            return complete_later(executor_, std::move(h), last_failure_, {});
        waiting_.push_back(std::move(h));
        if (!refreshing_) refresh();
    }

    void refresh() {
        refreshing_ = true;
        auto fetched = [self = shared_from_this()](error_code ec, Credentials c) {
            self->fetched(ec, std::move(c));
        };
        try {
            inner_->async_get_credentials(asio::bind_executor(strand_, fetched));
        } catch (...) {
            // An application's provider that throws is a failed fetch: the waiting callers get
            // its error, not a refresh that never ends.
            options_.logger.log(LogLevel::warning,
                                inner_->name() + " threw while fetching: " + detail::thrown_text());
            asio::post(strand_, [fetched] { fetched(Errc::credentials_not_found, {}); });
        }
    }

    // On strand_: what a refresh brought, handed to the callers waiting for it.
    void fetched(error_code ec, Credentials c) {
        refreshing_ = false;
        const TimePoint now = options_.clock();
        if (!ec && c.expiration && *c.expiration <= now) ec = Errc::credentials_expired;
        last_failure_ = ec;
        if (!ec) {
            std::lock_guard lock(cached_mutex_);
            cached_ = std::move(c);
        } else {
            retry_not_before_ = now + options_.retry_after_failure;
            options_.logger.log(
                LogLevel::warning,
                "refreshing credentials from " + inner_->name() + " failed: " + ec.message() +
                    (valid(now) ? "; the cached ones stay in use until they expire" : ""));
        }
        auto waiting = std::move(waiting_);
        waiting_.clear();
        for (Handler& h : waiting) {
            if (valid(now))
                complete_later(executor_, std::move(h), {}, *cached_);
            else
                complete_later(executor_, std::move(h),
                               ec ? ec : error_code(Errc::credentials_expired), {});
        }
    }

    asio::any_io_executor executor_;  // the caller's, where handlers complete
    asio::any_io_executor strand_;
    CredentialsProviderPtr inner_;
    CachingOptions options_;
    // Written on strand_ under the mutex; read there without it, elsewhere with it.
    std::mutex cached_mutex_;
    std::optional<Credentials> cached_;
    bool refreshing_ = false;
    TimePoint retry_not_before_{};
    error_code last_failure_;  // of the last fetch (none when it succeeded)
    std::vector<Handler> waiting_;
};

}  // namespace

CredentialsProviderPtr make_caching_credentials(asio::any_io_executor executor,
                                                CredentialsProviderPtr inner,
                                                CachingOptions options) {
    return std::make_shared<CachingProvider>(std::move(executor), std::move(inner),
                                             std::move(options));
}

CredentialsProviderPtr make_default_credentials(asio::any_io_executor executor,
                                                DefaultCredentialsOptions options) {
    if (!options.profile.logger.sink) options.profile.logger = options.logger;
    if (!options.metadata.logger.sink) options.metadata.logger = options.logger;
    if (!options.web_identity.http.logger.sink) options.web_identity.http.logger = options.logger;
    std::vector<CredentialsProviderPtr> chain = {
        make_environment_credentials(executor),
        make_web_identity_credentials(executor, options.web_identity),
        make_profile_credentials(executor, options.profile),
        make_container_credentials(executor, options.metadata),
        make_instance_metadata_credentials(executor, options.metadata),
    };
    auto chained = make_credentials_chain(executor, std::move(chain), options.logger);
    return make_caching_credentials(executor, std::move(chained), {.logger = options.logger});
}

CredentialsProviderPtr make_static_credentials(asio::any_io_executor executor,
                                               Credentials credentials) {
    return std::make_shared<StaticProvider>(std::move(executor), std::move(credentials));
}

bool RotatableCredentials::credentials_at_hand(Credentials& out) {
    std::lock_guard lock(mutex_);
    if (credentials_.empty()) return false;
    out = credentials_;
    return true;
}

RotatableCredentials::RotatableCredentials(asio::any_io_executor executor, Credentials credentials)
    : executor_(std::move(executor)), credentials_(std::move(credentials)) {}

void RotatableCredentials::rotate(Credentials credentials) {
    std::lock_guard lock(mutex_);
    credentials_ = std::move(credentials);
}

void RotatableCredentials::do_get_credentials(Handler h) {
    Credentials now;
    {
        std::lock_guard lock(mutex_);
        now = credentials_;
    }
    if (now.empty()) return complete_later(executor_, std::move(h), Errc::missing_credentials, {});
    complete_later(executor_, std::move(h), {}, std::move(now));
}

std::shared_ptr<RotatableCredentials> make_rotatable_credentials(asio::any_io_executor executor,
                                                                 Credentials credentials) {
    return std::make_shared<RotatableCredentials>(std::move(executor), std::move(credentials));
}

CredentialsProviderPtr make_environment_credentials(asio::any_io_executor executor) {
    return std::make_shared<EnvironmentProvider>(std::move(executor));
}

CredentialsProviderPtr make_profile_credentials(asio::any_io_executor executor,
                                                ProfileOptions options) {
    return std::make_shared<ProfileProvider>(std::move(executor), std::move(options));
}

CredentialsProviderPtr make_credentials_chain(asio::any_io_executor executor,
                                              std::vector<CredentialsProviderPtr> providers,
                                              Logger logger) {
    return std::make_shared<ChainProvider>(std::move(executor), std::move(providers),
                                           std::move(logger));
}

}  // namespace outbox
