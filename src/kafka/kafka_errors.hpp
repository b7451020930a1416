// What a librdkafka error means for a message: outbox's error code, and whether the message
// may have been written despite the error.
#pragma once

#include <outbox/error.hpp>

#include <librdkafka/rdkafka.h>
#include <boost/asio/error.hpp>

namespace outbox::detail {

inline bool is_transient_kafka_error(rd_kafka_resp_err_t err) noexcept {
    switch (err) {
        case RD_KAFKA_RESP_ERR__TRANSPORT:
        case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
        case RD_KAFKA_RESP_ERR__RESOLVE:
        case RD_KAFKA_RESP_ERR__TIMED_OUT:
        case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
        case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
        case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND:
        case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
        case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
        case RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE:
        case RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION:
        case RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR:
        case RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS:
        case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
            return true;
        default:
            return false;
    }
}

/// The error a delivery report (or a refused produce call) completes a message with.
/// `status` tells whether the broker may have the message although the report is an error.
inline boost::system::error_code classify_kafka_error(rd_kafka_resp_err_t err,
                                                      rd_kafka_msg_status_t status) noexcept {
    switch (err) {
        case RD_KAFKA_RESP_ERR_NO_ERROR:
            return {};
        case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
        case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
            return boost::asio::error::operation_aborted;
        case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
        case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
            return Errc::topic_not_found;
        case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
            return Errc::payload_too_large;
        case RD_KAFKA_RESP_ERR__AUTHENTICATION:
        case RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED:
            return Errc::authentication_failed;
        case RD_KAFKA_RESP_ERR__SSL:
            return Errc::tls_error;
        case RD_KAFKA_RESP_ERR_THROTTLING_QUOTA_EXCEEDED:
            return Errc::throttled;
        default:
            break;
    }
    if (status == RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED) return Errc::outcome_unknown;
    if (err == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT || err == RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE)
        return Errc::timeout;  // never sent, or known not written: safe to send again
    if (is_transient_kafka_error(err)) return Errc::service_unavailable;
    return Errc::service_error;
}

}  // namespace outbox::detail
