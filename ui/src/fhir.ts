// FHIR as a clinician reads it: names, identifiers with their system,
// dates, codes by their display. Resources come from apps and may lack
// anything; every function here returns NONE ("—") rather than undefined.

import type { ContextItem, FhirResource } from './api';
import { NONE } from './dom';

type Json = FhirResource;

const str = (v: unknown): string => (typeof v === 'string' ? v : typeof v === 'number' ? String(v) : '');
const arr = (v: unknown): Json[] => (Array.isArray(v) ? v.filter((x) => x && typeof x === 'object') : []);

/** A HumanName: its text, else "Family, Given Middle" with prefix/suffix. */
export function humanName(names: unknown): string {
  const list = arr(names);
  const n =
    list.find((x) => x.use === 'official') ?? list.find((x) => x.use === 'usual') ?? list.find((x) => x.use !== 'old') ?? list[0];
  if (!n) return NONE;
  if (str(n.text)) return str(n.text);
  const given = (Array.isArray(n.given) ? n.given : []).map(str).filter(Boolean).join(' ');
  const family = str(n.family);
  const prefix = (Array.isArray(n.prefix) ? n.prefix : []).map(str).join(' ');
  const suffix = (Array.isArray(n.suffix) ? n.suffix : []).map(str).join(' ');
  const core = family && given ? `${family}, ${given}` : family || given;
  const full = [prefix, core, suffix].filter(Boolean).join(' ');
  return full || NONE;
}

export function codingDisplay(c: unknown): string {
  if (!c || typeof c !== 'object') return '';
  const coding = c as Json;
  return str(coding.display) || str(coding.code);
}

/** A CodeableConcept: its text, else the first coding's display or code. */
export function concept(cc: unknown): string {
  if (!cc || typeof cc !== 'object') return NONE;
  const c = cc as Json;
  if (str(c.text)) return str(c.text);
  for (const coding of arr(c.coding)) {
    const d = codingDisplay(coding);
    if (d) return d;
  }
  return NONE;
}

/** True when an identifier's type has `code` (MR, ACSN, …). */
function hasType(id: Json, code: string): boolean {
  return arr(id.type?.coding).some((c) => str(c.code).toUpperCase() === code);
}

export interface Ident {
  label: string;
  value: string;
  system: string;
}

/** Identifiers with a label a person knows: MRN, Accession, else the type. */
export function identifiers(ids: unknown): Ident[] {
  return arr(ids).map((id) => {
    const label = hasType(id, 'MR')
      ? 'MRN'
      : hasType(id, 'ACSN')
        ? 'Accession'
        : str(id.type?.text) || codingDisplay(arr(id.type?.coding)[0]) || 'Identifier';
    return { label, value: str(id.value) || NONE, system: str(id.system) || 'no system' };
  });
}

/** The MRN, or the first identifier when none is typed MR. */
export function mrn(ids: unknown): Ident | null {
  const all = identifiers(ids);
  return all.find((i) => i.label === 'MRN') ?? all[0] ?? null;
}

export function accession(study: Json): string {
  const id = arr(study.identifier).find((i) => hasType(i, 'ACSN'));
  return id ? str(id.value) || NONE : NONE;
}

/** Modalities of a study, R4 (Coding) or R5 (CodeableConcept), then series. */
export function modalities(study: Json): string {
  const found = new Set<string>();
  for (const m of arr(study.modality)) found.add(codingDisplay(m) || concept(m));
  for (const s of arr(study.series)) {
    const m = s.modality;
    if (m) found.add(codingDisplay(m) || concept(m));
  }
  found.delete(NONE);
  found.delete('');
  return found.size ? [...found].join(', ') : NONE;
}

export function gender(g: unknown): string {
  const s = str(g);
  return s ? s[0].toUpperCase() + s.slice(1) : NONE;
}

/** A birth date as written (YYYY-MM-DD) with the age in years. */
export function birthDate(d: unknown): string {
  const s = str(d);
  if (!s) return NONE;
  const born = new Date(s);
  if (Number.isNaN(born.getTime())) return s;
  const now = new Date();
  let age = now.getFullYear() - born.getFullYear();
  const m = now.getMonth() - born.getMonth();
  if (m < 0 || (m === 0 && now.getDate() < born.getDate())) age -= 1;
  return `${s} (${age} y)`;
}

function value(o: Json): string {
  if (o.valueQuantity) return [str(o.valueQuantity.value), str(o.valueQuantity.unit || o.valueQuantity.code)].filter(Boolean).join(' ');
  if (o.valueCodeableConcept) return concept(o.valueCodeableConcept);
  if (o.valueString) return str(o.valueString);
  if (typeof o.valueBoolean === 'boolean') return o.valueBoolean ? 'yes' : 'no';
  return '';
}

/** One line about a shared resource. */
export function summary(r: FhirResource): string {
  switch (r.resourceType) {
    case 'Observation': {
      const v = value(r);
      return [concept(r.code), v && `= ${v}`, r.status && `(${r.status})`].filter(Boolean).join(' ');
    }
    case 'ImagingSelection': {
      const instances = arr(r.instance).length;
      const parts = [
        concept(r.code) !== NONE ? concept(r.code) : '',
        r.studyUid && `study ${r.studyUid}`,
        r.seriesUid && `series ${r.seriesUid}`,
        instances ? `${instances} instance${instances === 1 ? '' : 's'}` : '',
      ];
      return parts.filter(Boolean).join(', ') || NONE;
    }
    case 'DiagnosticReport':
      return [concept(r.code) !== NONE ? concept(r.code) : '', r.status && `status ${r.status}`].filter(Boolean).join(', ') || NONE;
    case 'DocumentReference':
      return str(r.description) || concept(r.type);
    case 'Patient':
      return humanName(r.name);
    case 'ImagingStudy':
      return str(r.description) || NONE;
    default:
      return concept(r.code) !== NONE ? concept(r.code) : str(r.title) || str(r.description) || NONE;
  }
}

/** The resource for `key` in an event's context (or null). */
export function item(context: ContextItem[] | undefined, key: string): FhirResource | null {
  const found = (context ?? []).find((i) => i.key === key);
  return found?.resource ?? null;
}

/** `Type/id` of a context item given by reference only. */
export function referenceOf(context: ContextItem[] | undefined, key: string): string {
  const found = (context ?? []).find((i) => i.key === key);
  return str(found?.reference?.reference) || NONE;
}

export type FhirLike = FhirResource;

/** The DICOM Study Instance UID (identifier system urn:dicom:uid). */
export function studyUid(study: Json): string {
  const id = arr(study.identifier).find((i) => str(i.system) === 'urn:dicom:uid');
  return id ? str(id.value).replace(/^urn:oid:/, '') : '';
}
