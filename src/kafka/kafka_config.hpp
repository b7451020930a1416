// What a KafkaDestinationConfig means to librdkafka, without creating a producer: the checks
// that refuse a configuration at once, and the properties it becomes. Private to outbox::kafka.
#pragma once

#include <outbox/kafka_destination.hpp>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace outbox::detail::kafka {

using Properties = std::vector<std::pair<std::string, std::string>>;

/// 1 to 249 of a-z A-Z 0-9 . _ -, and not "." or "..".
bool is_valid_topic_name(std::string_view topic);

/// Throws std::invalid_argument ("KafkaDestination: ...") naming the first thing wrong.
void check_config(const KafkaDestinationConfig& config);

/// Whether the destination authenticates with Amazon MSK's IAM tokens, and their region
/// (the configured one, else AWS_REGION, else AWS_DEFAULT_REGION; empty when none).
bool uses_msk_iam(const KafkaDestinationConfig& config);
std::string msk_iam_region(const KafkaDestinationConfig& config);

/// The librdkafka properties, in the order to set them: ours, then config.properties (a
/// property given there overrides ours), then log_level 7 when the logger wants debug lines.
Properties producer_properties(const KafkaDestinationConfig& config);

}  // namespace outbox::detail::kafka
