//! Where the hub is mounted: the paths apps are told (`hub.url`) and
//! look for. A leaf: the routes, the dashboard and the launcher name these
//! without depending on the server that assembles them.

/// The STU3 hub path; `hub.url` is `http://HOST:PORT` (`https` with TLS) + this.
pub const STU3_PATH: &str = "/fhircast/STU3";
/// The same hub for STU1/STU2 clients (webhooks, `hub.events=*` refused).
pub const STU2_PATH: &str = "/fhircast/STU2";
/// OHIF's FHIRcast extension looks for the hub here.
pub const OHIF_PATH: &str = "/api/hub";
