//! The STU3 event catalog: which context keys each event carries, how many,
//! and of what kind (checklist 44, 45; hub-digest §4.3). Events outside the
//! catalog are checked by their shape only (see `validate`).

/// How a context entry carries its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    /// `"resource": {...}` of this resourceType, with an `id`.
    Resource(&'static str),
    /// `"reference": {"reference": "Type/id"}` to this type ("" = any type).
    Reference(&'static str),
    /// Either of the above (anchors of `-update`/`-select` events; clients differ).
    ResourceOrReference(&'static str),
}

#[derive(Clone, Copy, Debug)]
pub struct KeySpec {
    pub key: &'static str,
    pub min: usize,
    /// `None` = any number.
    pub max: Option<usize>,
    pub kind: ValueKind,
}

#[derive(Debug)]
pub struct CatalogEntry {
    /// The spelling the hub advertises.
    pub name: &'static str,
    pub keys: &'static [KeySpec],
}

const fn one(key: &'static str, kind: ValueKind) -> KeySpec {
    KeySpec {
        key,
        min: 1,
        max: Some(1),
        kind,
    }
}
const fn opt(key: &'static str, kind: ValueKind) -> KeySpec {
    KeySpec {
        key,
        min: 0,
        max: Some(1),
        kind,
    }
}
const fn many(key: &'static str, min: usize, kind: ValueKind) -> KeySpec {
    KeySpec {
        key,
        min,
        max: None,
        kind,
    }
}

use ValueKind::{Reference as Ref, Resource as Res, ResourceOrReference as Either};

// Patient-open keeps STU2's optional `encounter` key: STU2 clients still send it.
const PATIENT: &[KeySpec] = &[
    one("patient", Res("Patient")),
    opt("encounter", Res("Encounter")),
];
const ENCOUNTER: &[KeySpec] = &[
    one("encounter", Res("Encounter")),
    one("patient", Res("Patient")),
];
const STUDY: &[KeySpec] = &[
    one("study", Res("ImagingStudy")),
    opt("encounter", Res("Encounter")),
    opt("patient", Res("Patient")),
];
const REPORT: &[KeySpec] = &[
    one("report", Res("DiagnosticReport")),
    opt("encounter", Res("Encounter")),
    many("study", 0, Res("ImagingStudy")),
    one("patient", Res("Patient")),
];
const REPORT_UPDATE: &[KeySpec] = &[
    one("report", Either("DiagnosticReport")),
    opt("patient", Either("Patient")),
    one("updates", Res("Bundle")),
];
const REPORT_SELECT: &[KeySpec] = &[
    one("report", Either("DiagnosticReport")),
    opt("patient", Either("Patient")),
    many("select", 0, Ref("")),
];
const SYNC_ERROR: &[KeySpec] = &[one("operationoutcome", Res("OperationOutcome"))];
const PARAMETERS: &[KeySpec] = &[one("parameters", Res("Parameters"))];

pub static CATALOG: &[CatalogEntry] = &[
    CatalogEntry {
        name: "Patient-open",
        keys: PATIENT,
    },
    CatalogEntry {
        name: "Patient-close",
        keys: PATIENT,
    },
    CatalogEntry {
        name: "Encounter-open",
        keys: ENCOUNTER,
    },
    CatalogEntry {
        name: "Encounter-close",
        keys: ENCOUNTER,
    },
    CatalogEntry {
        name: "ImagingStudy-open",
        keys: STUDY,
    },
    CatalogEntry {
        name: "ImagingStudy-close",
        keys: STUDY,
    },
    CatalogEntry {
        name: "DiagnosticReport-open",
        keys: REPORT,
    },
    CatalogEntry {
        name: "DiagnosticReport-close",
        keys: REPORT,
    },
    CatalogEntry {
        name: "DiagnosticReport-update",
        keys: REPORT_UPDATE,
    },
    CatalogEntry {
        name: "DiagnosticReport-select",
        keys: REPORT_SELECT,
    },
    CatalogEntry {
        name: "SyncError",
        keys: SYNC_ERROR,
    },
    CatalogEntry {
        name: "UserLogout",
        keys: PARAMETERS,
    },
    CatalogEntry {
        name: "UserHibernate",
        keys: PARAMETERS,
    },
    CatalogEntry {
        name: "Home-open",
        keys: &[],
    },
];

/// The catalog entry for a lower-cased event name.
pub fn lookup(folded: &str) -> Option<&'static CatalogEntry> {
    CATALOG.iter().find(|e| e.name.eq_ignore_ascii_case(folded))
}

/// The context key under which an anchor of this (lower-cased) resource type
/// travels: `study` for ImagingStudy and `report` for DiagnosticReport are
/// the catalog's legacy exceptions, every other type uses its own name.
pub fn anchor_key(resource_type: &str) -> String {
    match resource_type {
        "imagingstudy" => "study".to_owned(),
        "diagnosticreport" => "report".to_owned(),
        other => other.to_owned(),
    }
}

/// The `eventsSupported` list of the discovery document.
pub fn supported_event_names() -> Vec<&'static str> {
    CATALOG.iter().map(|e| e.name).collect()
}
