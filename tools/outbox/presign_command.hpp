// `outbox presign s3://BUCKET/KEY`: prints a pre-signed S3 URL.
#pragma once

namespace outbox::cli {

int run_presign(int argc, char** argv);

}  // namespace outbox::cli
