// Fuzz target: the XML text extractor that reads STS (and later S3) answers.
#include <outbox/detail/credentials_parsing.hpp>
#include <outbox/detail/xml_extract.hpp>

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
    outbox::Credentials c;
    std::string message;
    const auto ec = outbox::detail::parse_sts_credentials_xml(xml, c, message);
    if (!ec && (c.access_key_id.empty() || c.secret_access_key.empty() || !c.expiration))
        std::abort();
    return 0;
}
