"""Browser tests of the dashboard: a package, so that its Playwright and server fixtures
end with its last test."""
