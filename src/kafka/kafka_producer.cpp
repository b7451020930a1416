// KafkaDestination's producer: librdkafka's handles and topic creation, its callbacks, and
// the redaction of secrets from what it logs; apart from the send path (kafka_destination.cpp).
#include "kafka/kafka_config.hpp"
#include "kafka/kafka_destination_impl.hpp"

#include "core/thrown_text.hpp"

#include <outbox/msk_iam_token.hpp>

#include <boost/asio/bind_executor.hpp>

#include <librdkafka/rdkafka.h>
#include <boost/asio/post.hpp>

#include <stdexcept>
#include <string>
#include <utility>

namespace outbox {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {

LogLevel log_level_of(int syslog_level) {
    if (syslog_level <= 3) return LogLevel::error;
    if (syslog_level == 4) return LogLevel::warning;
    if (syslog_level <= 6) return LogLevel::info;
    return LogLevel::debug;
}

}  // namespace

void detail::kafka::KafkaHandles::destroy() {
    if (!rk) return;
    if (main_queue) rd_kafka_queue_destroy(main_queue);
    if (admin_queue) rd_kafka_queue_destroy(admin_queue);
    if (rkt) rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    rk = nullptr;
    rkt = nullptr;
    main_queue = admin_queue = nullptr;
}

KafkaDestination::Impl::Impl(asio::any_io_executor ex, KafkaDestinationConfig cfg)
    : executor(ex), config(std::move(cfg)), close_timer(ex) {}

KafkaDestination::Impl::~Impl() {
    handles.destroy();
}

// ---- librdkafka callbacks (inside rd_kafka_poll, mutex held) -----------------------------

void KafkaDestination::Impl::on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    static_cast<Impl*>(opaque)->delivered(*m);
}

void KafkaDestination::Impl::on_error(rd_kafka_t*, int err, const char* reason, void* opaque) {
    static_cast<Impl*>(opaque)->connection_failed(static_cast<rd_kafka_resp_err_t>(err), reason);
}

void KafkaDestination::Impl::on_log(const rd_kafka_t* rk, int level, const char* facility,
                                    const char* buf) {
    auto* self = static_cast<Impl*>(rd_kafka_opaque(rk));
    const LogLevel l = log_level_of(level);
    if (!self->config.logger.enabled(l)) return;
    self->config.logger.log(l, self->redact(std::string("kafka: [") + facility + "] " + buf));
}

int32_t KafkaDestination::Impl::partition_least_bytes(const rd_kafka_topic_t*, const void*, size_t,
                                                      int32_t partition_cnt, void* rkt_opaque,
                                                      void* msg_opaque) {
    auto* self = static_cast<Impl*>(rkt_opaque);
    const auto* e = static_cast<const Entry*>(msg_opaque);
    return self->least_bytes.pick(partition_cnt, e->wire_bytes);
}

int32_t KafkaDestination::Impl::partition_round_robin(const rd_kafka_topic_t* rkt, const void*,
                                                      size_t, int32_t partition_cnt,
                                                      void* rkt_opaque, void*) {
    auto* self = static_cast<Impl*>(rkt_opaque);
    const std::uint32_t start = self->round_robin_next.fetch_add(1, std::memory_order_relaxed);
    for (int32_t i = 0; i < partition_cnt; ++i) {
        const auto p = static_cast<int32_t>((start + i) % partition_cnt);
        if (rd_kafka_topic_partition_available(rkt, p) == 1) return p;
    }
    return static_cast<int32_t>(start % partition_cnt);
}

void KafkaDestination::Impl::on_queue_event(rd_kafka_t*, void* opaque) {
    auto* waker = static_cast<Waker*>(opaque);
    asio::post(waker->executor, [impl = waker->impl] {
        if (auto self = impl.lock()) self->serve();
    });
}

std::string KafkaDestination::Impl::redact(std::string text) const {
    auto hide = [&](const std::string& secret) {
        if (secret.empty()) return;
        for (auto at = text.find(secret); at != std::string::npos; at = text.find(secret, at + 10))
            text.replace(at, secret.size(), "[redacted]");
    };
    hide(config.sasl_password);
    hide(config.tls.key_password);
    for (const auto& [name, value] : config.properties)
        if (is_secret_kafka_property(name)) hide(value);
    return text;
}

void KafkaDestination::Impl::log(LogLevel level, const std::string& message) const {
    if (config.logger.enabled(level)) config.logger.log(level, redact("kafka: " + message));
}

// ---- topic creation and connection errors ------------------------------------------------

void KafkaDestination::Impl::serve_admin_results() {
    while (rd_kafka_event_t* ev = rd_kafka_queue_poll(handles.admin_queue, 0)) {
        if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_CREATETOPICS_RESULT) topic_created(ev);
        rd_kafka_event_destroy(ev);
    }
}

void KafkaDestination::Impl::topic_created(rd_kafka_event_t* ev) {
    std::string error;
    if (rd_kafka_event_error(ev)) {
        error = rd_kafka_event_error_string(ev);
    } else {
        const auto* result = rd_kafka_event_CreateTopics_result(ev);
        size_t n = 0;
        const rd_kafka_topic_result_t** topics = rd_kafka_CreateTopics_result_topics(result, &n);
        for (size_t i = 0; i < n; ++i) {
            const auto err = rd_kafka_topic_result_error(topics[i]);
            if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
                log(LogLevel::info, "created topic \"" + config.topic + "\" with " +
                                        std::to_string(config.partitions) + " partitions");
            } else if (err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
                log(LogLevel::debug, "topic \"" + config.topic + "\" exists");
            } else {
                const char* why = rd_kafka_topic_result_error_string(topics[i]);
                error = std::string(rd_kafka_err2name(err)) + (why ? std::string(": ") + why : "");
            }
        }
    }
    if (!error.empty()) {
        // Producing may still work (the topic may exist and creating it be forbidden):
        // try, and say why the topic is missing if it is.
        topic_creation_error = error;
        log(LogLevel::warning, "creating topic \"" + config.topic + "\" failed: " + error);
    }
    topic_ready = true;
}

void KafkaDestination::Impl::connection_failed(rd_kafka_resp_err_t err, const char* reason) {
    Diagnostics d;
    d.code = rd_kafka_err2name(err);
    d.message = redact(reason ? reason : rd_kafka_err2str(err));
    if (err == RD_KAFKA_RESP_ERR__FATAL) d.message = fatal_reason();
    log(err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN ? LogLevel::warning : LogLevel::info,
        d.code + ": " + d.message);
    connection_error = d;
    // A handshake begun with the credentials set_sasl_credentials replaced may be refused
    // after the rotation: the next connection uses the new ones, so nothing is failed for it.
    if (err == RD_KAFKA_RESP_ERR__AUTHENTICATION && credentials_rotated_at &&
        std::chrono::steady_clock::now() - *credentials_rotated_at < rotation_grace)
        return;
    if (err == RD_KAFKA_RESP_ERR__AUTHENTICATION || err == RD_KAFKA_RESP_ERR__SSL) {
        // Not worth retrying for minutes: what is queued fails now with the reason.
        const error_code ec = err == RD_KAFKA_RESP_ERR__SSL
                                  ? error_code(Errc::tls_error)
                                  : error_code(Errc::authentication_failed);
        refusal.emplace(ec, d);
        rd_kafka_purge(handles.rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_NON_BLOCKING);
    }
}

// ---- construction ------------------------------------------------------------------------

namespace {

class ConfBuilder {
  public:
    ConfBuilder() : conf_(rd_kafka_conf_new()) {}
    ~ConfBuilder() {
        if (conf_) rd_kafka_conf_destroy(conf_);
    }
    ConfBuilder(const ConfBuilder&) = delete;
    ConfBuilder& operator=(const ConfBuilder&) = delete;

    void set(const std::string& name, const std::string& value) {
        char err[512];
        if (rd_kafka_conf_set(conf_, name.c_str(), value.c_str(), err, sizeof err) !=
            RD_KAFKA_CONF_OK) {
            // librdkafka's message may quote the value: not for secrets.
            throw std::invalid_argument("KafkaDestination: property \"" + name + "\": " +
                                        (is_secret_kafka_property(name) ? "refused" : err));
        }
    }
    rd_kafka_conf_t* get() noexcept { return conf_; }
    rd_kafka_conf_t* release() noexcept { return std::exchange(conf_, nullptr); }

  private:
    rd_kafka_conf_t* conf_;
};

}  // namespace

KafkaDestination::KafkaDestination(asio::any_io_executor executor, KafkaDestinationConfig config) {
    detail::kafka::check_config(config);

    auto impl = std::make_shared<Impl>(executor, std::move(config));
    const KafkaDestinationConfig& c = impl->config;
    impl->staging_threshold = c.staging_threshold ? c.staging_threshold : c.max_message_size;

    ConfBuilder conf;
    for (const auto& [name, value] : detail::kafka::producer_properties(c)) conf.set(name, value);

    rd_kafka_conf_set_opaque(conf.get(), impl.get());
    rd_kafka_conf_set_dr_msg_cb(conf.get(), &Impl::on_delivery);
    rd_kafka_conf_set_error_cb(conf.get(), &Impl::on_error);
    rd_kafka_conf_set_log_cb(conf.get(), &Impl::on_log);
    if (detail::kafka::uses_msk_iam(c)) {
        rd_kafka_conf_set_oauthbearer_token_refresh_cb(conf.get(), &Impl::on_token_refresh);
        // Served on librdkafka's background thread: the first token needs no poll.
        rd_kafka_conf_enable_sasl_queue(conf.get(), 1);
    }

    char err[512];
    rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), err, sizeof err);
    if (!rk) throw std::invalid_argument(std::string("KafkaDestination: ") + impl->redact(err));
    conf.release();  // rd_kafka_new took it
    impl->handles.rk = rk;
    rd_kafka_set_log_queue(rk, nullptr);  // logs go to the main queue
    if (detail::kafka::uses_msk_iam(c))
        if (rd_kafka_error_t* e = rd_kafka_sasl_background_callbacks_enable(rk)) {
            const std::string why = rd_kafka_error_string(e);
            rd_kafka_error_destroy(e);
            throw std::invalid_argument("KafkaDestination: " + why);
        }

    rd_kafka_topic_conf_t* tconf = rd_kafka_default_topic_conf_dup(rk);
    if (c.partitioner == KafkaPartitioner::least_bytes)
        rd_kafka_topic_conf_set_partitioner_cb(tconf, &Impl::partition_least_bytes);
    else if (c.partitioner == KafkaPartitioner::round_robin)
        rd_kafka_topic_conf_set_partitioner_cb(tconf, &Impl::partition_round_robin);
    rd_kafka_topic_conf_set_opaque(tconf, impl.get());
    impl->handles.rkt = rd_kafka_topic_new(rk, c.topic.c_str(), tconf);
    if (!impl->handles.rkt)
        throw std::invalid_argument("KafkaDestination: topic \"" + c.topic +
                                    "\": " + rd_kafka_err2str(rd_kafka_last_error()));

    impl->waker = std::make_unique<Impl::Waker>(Impl::Waker{impl, executor});
    impl->handles.main_queue = rd_kafka_queue_get_main(rk);
    rd_kafka_queue_cb_event_enable(impl->handles.main_queue, &Impl::on_queue_event,
                                   impl->waker.get());

    if (c.partitions > 0) {
        impl->topic_ready = false;
        impl->handles.admin_queue = rd_kafka_queue_new(rk);
        rd_kafka_queue_cb_event_enable(impl->handles.admin_queue, &Impl::on_queue_event,
                                       impl->waker.get());
        char errstr[256];
        rd_kafka_NewTopic_t* topic = rd_kafka_NewTopic_new(
            c.topic.c_str(), c.partitions, c.replication_factor, errstr, sizeof errstr);
        if (!topic) throw std::invalid_argument(std::string("KafkaDestination: ") + errstr);
        rd_kafka_AdminOptions_t* options =
            rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
        rd_kafka_AdminOptions_set_request_timeout(options, 15000, errstr, sizeof errstr);
        rd_kafka_AdminOptions_set_operation_timeout(options, 15000, errstr, sizeof errstr);
        rd_kafka_CreateTopics(rk, &topic, 1, options, impl->handles.admin_queue);
        rd_kafka_AdminOptions_destroy(options);
        rd_kafka_NewTopic_destroy(topic);
    }
    // The queue event fires when a queue turns non-empty; rd_kafka_new may already have
    // queued log lines, so serve once now or nothing would ever wake us.
    asio::post(executor, [weak = std::weak_ptr<Impl>(impl)] {
        if (auto self = weak.lock()) self->serve();
    });
    impl_ = std::move(impl);
}

void KafkaDestination::Impl::on_token_refresh(rd_kafka_t*, const char*, void* opaque) {
    auto* impl = static_cast<Impl*>(opaque);
    asio::post(impl->executor, [weak = impl->weak_from_this()] {
        if (auto self = weak.lock()) self->refresh_token();
    });
}

void KafkaDestination::Impl::refresh_token() {
    try {
        ask_for_token();
    } catch (...) {
        // An application's provider that throws: no token, as when it fails. Left unanswered,
        // librdkafka would wait for one, and the exception would leave the event loop.
        const std::string why =
            "no MSK IAM token: the credentials provider threw: " + detail::thrown_text();
        log(LogLevel::error, why);
        std::lock_guard lock(mutex);
        if (!stopped && handles.rk) rd_kafka_oauthbearer_set_token_failure(handles.rk, why.c_str());
    }
}

void KafkaDestination::Impl::ask_for_token() {
    config.credentials->async_get_credentials(asio::bind_executor(
        executor, [weak = weak_from_this()](boost::system::error_code ec, Credentials c) {
            auto self = weak.lock();
            if (!self) return;
            MskIamToken token;
            if (!ec)
                ec = make_msk_iam_token(detail::kafka::msk_iam_region(self->config), c,
                                        std::chrono::system_clock::now(), token);
            std::lock_guard lock(self->mutex);
            if (self->stopped || !self->handles.rk) return;
            if (ec) {
                const std::string why = "no MSK IAM token: " + ec.message();
                self->log(LogLevel::error, why);
                rd_kafka_oauthbearer_set_token_failure(self->handles.rk, why.c_str());
                return;
            }
            // Not past the credentials' own expiry (less a minute): librdkafka asks again at
            // 80% of what it is told.
            if (c.expiration) {
                const auto until_ms =
                    std::chrono::duration_cast<std::chrono::milliseconds>(
                        (*c.expiration - std::chrono::minutes(1)).time_since_epoch())
                        .count();
                token.expires_at_ms = std::max<std::int64_t>(
                    std::min(token.expires_at_ms, until_ms),
                    std::chrono::duration_cast<std::chrono::milliseconds>(
                        (std::chrono::system_clock::now() + std::chrono::seconds(10))
                            .time_since_epoch())
                        .count());
            }
            char errstr[512];
            // The principal is only the client's own label; the broker reads the token.
            if (rd_kafka_oauthbearer_set_token(self->handles.rk, token.token.c_str(),
                                               token.expires_at_ms, c.access_key_id.c_str(),
                                               nullptr, 0, errstr,
                                               sizeof errstr) != RD_KAFKA_RESP_ERR_NO_ERROR) {
                self->log(LogLevel::error,
                          std::string("the MSK IAM token was refused: ") + self->redact(errstr));
                rd_kafka_oauthbearer_set_token_failure(self->handles.rk, "token refused");
            }
        }));
}

void KafkaDestination::set_sasl_credentials(std::string username, std::string password) {
    Impl& impl = *impl_;
    const bool sasl = impl.config.security == KafkaSecurity::sasl_ssl ||
                      impl.config.security == KafkaSecurity::sasl_plaintext;
    if (!sasl || impl.config.sasl_mechanism == SaslMechanism::aws_msk_iam)
        throw std::invalid_argument(
            "KafkaDestination::set_sasl_credentials: the destination does not use SASL PLAIN or "
            "SCRAM");
    if (username.empty())
        throw std::invalid_argument("KafkaDestination::set_sasl_credentials: empty user name");
    std::lock_guard lock(impl.mutex);
    if (impl.stopped || !impl.handles.rk) return;
    if (rd_kafka_error_t* e =
            rd_kafka_sasl_set_credentials(impl.handles.rk, username.c_str(), password.c_str())) {
        const std::string why = rd_kafka_error_string(e);
        rd_kafka_error_destroy(e);
        throw std::invalid_argument("KafkaDestination::set_sasl_credentials: " + impl.redact(why));
    }
    impl.config.sasl_username = std::move(username);
    impl.config.sasl_password = std::move(password);
    impl.refusal.reset();  // what fails from now on fails for its own reason
    impl.credentials_rotated_at = std::chrono::steady_clock::now();
}

bool is_secret_kafka_property(std::string_view name) {
    auto has = [&](std::string_view part) { return name.find(part) != std::string_view::npos; };
    return has("password") || has("secret") || has("sasl.oauthbearer.config") ||
           name == "ssl.key.pem" || name == "ssl_key";
}

}  // namespace outbox
