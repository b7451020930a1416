include(CMakePackageConfigHelpers)

set(OUTBOX_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/outbox)

set(OUTBOX_INSTALLED_TARGETS outbox)
if(OUTBOX_WITH_KAFKA)
    list(APPEND OUTBOX_INSTALLED_TARGETS outbox_kafka)
    install(FILES cmake/OutboxFindRdKafka.cmake DESTINATION ${OUTBOX_CMAKE_DIR})
endif()
if(OUTBOX_WITH_POSTGRESQL)
    list(APPEND OUTBOX_INSTALLED_TARGETS outbox_postgresql)
    install(FILES cmake/OutboxFindLibpq.cmake DESTINATION ${OUTBOX_CMAKE_DIR})
endif()
install(TARGETS ${OUTBOX_INSTALLED_TARGETS} EXPORT outboxTargets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY include/outbox DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT outboxTargets NAMESPACE outbox:: DESTINATION ${OUTBOX_CMAKE_DIR})

configure_package_config_file(cmake/outboxConfig.cmake.in
    ${CMAKE_CURRENT_BINARY_DIR}/outboxConfig.cmake
    INSTALL_DESTINATION ${OUTBOX_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/outboxConfigVersion.cmake
    COMPATIBILITY SameMinorVersion)
install(FILES
    ${CMAKE_CURRENT_BINARY_DIR}/outboxConfig.cmake
    ${CMAKE_CURRENT_BINARY_DIR}/outboxConfigVersion.cmake
    DESTINATION ${OUTBOX_CMAKE_DIR})
install(FILES LICENSE DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/outbox)
