// When a destination hands a body to its PayloadStager instead of sending it inline.
#pragma once

#include <cstddef>

namespace outbox {

enum class StagingPolicy {
    over_threshold,  // stage bodies over the threshold (default: the destination's own limit)
    always,          // stage every body: the queue or topic only ever carries the URL message
    never,           // never stage: a body over the limit fails with Errc::payload_too_large
};

}  // namespace outbox
