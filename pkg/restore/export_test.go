package restore

// Requested is requested, for the tests.
var Requested = requested
