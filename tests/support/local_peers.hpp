// The local peers the integration and CLI tests share, one of each per test program: fauxqs
// (SQS), s3rver (S3), and the independent SQS client (the AWS SDK for JavaScript).
#pragma once

#include "peer_process.hpp"

#include <cstddef>
#include <string>
#include <vector>

namespace outbox::test {

std::string peers_dir();

/// fauxqs on 127.0.0.1, started on first use, stopped when the program ends.
PeerProcess& fauxqs();
/// s3rver on 127.0.0.1 with the buckets outbox-staging, other.bucket and cli-staging; its
/// key pair is S3RVER/S3RVER.
PeerProcess& s3rver();

/// CreateQueue through the AWS SDK for JavaScript; returns the queue URL. Throws on failure.
std::string create_queue(const std::string& name, const std::string& attributes_json = {});

/// `count` queues named PREFIX-0, PREFIX-1, ... made by one client process; their URLs.
std::vector<std::string> create_queues(const std::string& prefix, std::size_t count);
/// Up to `count_each` bodies from each queue (deleted once read) within `seconds`, by one
/// client process: the JSON object {URL: [body, ...]} it prints.
std::string receive_many_json(const std::vector<std::string>& queue_urls, std::size_t count_each,
                              int seconds = 60);

/// Receives (and deletes) up to `count` messages within `seconds`; the raw JSON array
/// printed by tests/peers/sqs_client.mjs.
std::string receive_json(const std::string& queue_url, std::size_t count, int seconds = 5);
/// The bodies only.
/// Every body the queue holds: receives (and deletes) until it comes back empty twice, within
/// `seconds`.
std::vector<std::string> drain_bodies(const std::string& queue_url, int seconds = 60);
std::vector<std::string> receive_bodies(const std::string& queue_url, std::size_t count,
                                        int seconds = 5);

}  // namespace outbox::test
