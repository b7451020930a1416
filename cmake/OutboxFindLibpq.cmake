# outbox::libpq: PostgreSQL's client library, whichever way it is installed. Conan's libpq
# and CMake's own FindPostgreSQL give PostgreSQL::PostgreSQL; Debian ships libpq.pc too. Used
# by the build and by the installed outboxConfig.cmake alike.
if(NOT TARGET outbox::libpq)
    add_library(outbox::libpq INTERFACE IMPORTED)
    find_package(PkgConfig QUIET)
    if(PkgConfig_FOUND)
        pkg_check_modules(OUTBOX_LIBPQ QUIET IMPORTED_TARGET libpq>=14)
    endif()
    if(TARGET PkgConfig::OUTBOX_LIBPQ)
        target_link_libraries(outbox::libpq INTERFACE PkgConfig::OUTBOX_LIBPQ)
    else()
        find_package(PostgreSQL 14 REQUIRED)  # pipeline mode needs libpq 14
        target_link_libraries(outbox::libpq INTERFACE PostgreSQL::PostgreSQL)
    endif()
endif()
