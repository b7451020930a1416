// Canonicalisation steps of SigV4, exposed for tests and fuzzing. Not API.
#pragma once

#include <outbox/sigv4.hpp>

#include <span>
#include <string>
#include <string_view>

namespace outbox::detail::sigv4 {

/// Appends `in` URI-encoded as SigV4 wants: A-Z a-z 0-9 - _ . ~ (and '/' when keep_slash)
/// stay, every other byte becomes %XX with uppercase hex.
void append_uri_encoded(std::string& out, std::string_view in, bool keep_slash);

/// Appends `in` with %XX sequences decoded; a '%' not followed by two hex digits stays.
/// '+' stays '+' (SigV4 does not treat it as a space).
void append_percent_decoded(std::string& out, std::string_view in);

/// Appends the canonical URI of `path` under `rule`.
void append_canonical_uri(std::string& out, std::string_view path, outbox::sigv4::PathRule rule);

/// A query parameter already encoded with append_uri_encoded (the X-Amz-* parameters of a
/// pre-signed URL, encoded once for both the canonical query and the URL).
struct EncodedQueryParam {
    std::string_view name;
    std::string_view value;
};

/// Appends the canonical query: every parameter of `wire_query` decoded and re-encoded,
/// plus `extra` as they are; sorted by key then value in byte order; duplicates kept;
/// a key without '=' becomes "key=".
void append_canonical_query(std::string& out, std::string_view wire_query,
                            std::span<const EncodedQueryParam> extra = {});

/// Appends a header value trimmed, with every run of whitespace collapsed to one space.
void append_canonical_header_value(std::string& out, std::string_view value);

}  // namespace outbox::detail::sigv4
