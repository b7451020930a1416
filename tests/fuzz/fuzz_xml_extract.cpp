// Fuzz target: the XML text extractor that reads STS and S3 answers, and the S3 error reader.
#include "aws/credentials/credentials_parsing.hpp"
#include "aws/s3/s3_protocol.hpp"
#include "aws/xml_extract.hpp"

#include <cstdint>
#include <cstdlib>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view xml(reinterpret_cast<const char*>(data), size);
    for (const char* name : {"Code", "Message", "AccessKeyId", "Expiration", "a"}) {
        const auto text = outbox::detail::xml_element_text(xml, name);
        // Decoded text never keeps markup: a '<' in the element would have made it not text-only.
        if (text && text->find('<') != std::string::npos &&
            xml.find("&lt;") == std::string_view::npos && xml.find("&#") == std::string_view::npos)
            std::abort();
        (void)outbox::detail::xml_element_text(xml, name, "Error");
    }
    outbox::HttpResponse res;
    res.status = size > 0 ? 400u + data[0] % 200u : 403u;
    res.body = std::string(xml);
    outbox::Diagnostics d;
    const auto s3_ec = outbox::detail::s3::parse_error_response(res, d);
    if (!s3_ec || d.code.empty())
        std::abort();  // an S3 error reply is always an error, with a code
    outbox::Credentials c;
    std::string message;
    const auto ec = outbox::detail::parse_sts_credentials_xml(xml, c, message);
    if (!ec && (c.access_key_id.empty() || c.secret_access_key.empty() || !c.expiration))
        std::abort();
    return 0;
}
