//! Checks a PDF for the two shapes that made the text extractor exhaust the process before
//! it is run: streams that inflate without bound (a flate bomb), and form XObjects that
//! draw each other in a cycle or nest deeper than any real document (unbounded recursion).
//! Both are refused as [`ParseError::Pdf`]. The parser sandbox contains whatever else
//! such a file finds; these checks make the common cases a clear error even without it.

use std::collections::HashMap;
use std::io::Read;

use lopdf::{Dictionary, Document, Object, ObjectId};

use crate::ParseError;

/// The most any one stream may inflate to. Real content streams and images are far
/// smaller; the extractor holds every decoded stream in memory at once.
pub(crate) const MAX_STREAM_BYTES: u64 = 256 << 20;

/// How deeply forms may draw forms. Real documents nest a handful of levels.
pub(crate) const MAX_FORM_DEPTH: usize = 32;

/// Runs both checks on a loadable PDF; a file lopdf cannot load is left to the extractor,
/// which reports why.
pub(crate) fn check(bytes: &[u8]) -> Result<(), ParseError> {
    let Ok(doc) = Document::load_mem(bytes) else {
        return Ok(());
    };
    check_streams(&doc)?;
    check_forms(&doc)
}

fn refuse(detail: String) -> Result<(), ParseError> {
    Err(ParseError::Pdf { detail })
}

/// Inflates every Flate-compressed stream but images (through each of its Flate filters,
/// however many) up to the limit, without keeping the output.
fn check_streams(doc: &Document) -> Result<(), ParseError> {
    for (id, object) in &doc.objects {
        let Object::Stream(stream) = object else {
            continue;
        };
        // Images are never decoded here: the extractor skips them, and a scanned page's
        // image (however large) is rasterized by pdftoppm in its own process, under OCR's
        // page time limit, so that page fails alone.
        if stream.dict.get(b"Subtype").and_then(Object::as_name).ok() == Some(b"Image") {
            continue;
        }
        let Ok(filters) = stream.filters() else {
            continue;
        };
        let flate = filters
            .iter()
            .take_while(|f| *f == b"FlateDecode" || *f == b"Fl")
            .count();
        if flate == 0 {
            continue;
        }
        if inflated_size(&stream.content, flate) > MAX_STREAM_BYTES {
            return refuse(format!(
                "stream {} {} inflates to more than {} MiB (a decompression bomb?)",
                id.0,
                id.1,
                MAX_STREAM_BYTES >> 20
            ));
        }
    }
    Ok(())
}

/// Bytes `layers` rounds of zlib inflation give, counted up to one past the limit.
/// Corrupt data counts what inflated before the error.
fn inflated_size(data: &[u8], layers: usize) -> u64 {
    let mut reader: Box<dyn Read + '_> = Box::new(data);
    for _ in 0..layers {
        reader = Box::new(flate2::read::ZlibDecoder::new(reader));
    }
    let mut buffer = vec![0u8; 64 << 10];
    let mut total = 0u64;
    let mut limited = reader.take(MAX_STREAM_BYTES + 1);
    while let Ok(n) = limited.read(&mut buffer) {
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    total
}

/// The form XObjects a resource dictionary names, by object id.
fn xobjects(doc: &Document, owner: &Dictionary) -> Vec<ObjectId> {
    let deref = |object: &Object| -> Option<Object> {
        match object {
            Object::Reference(id) => doc.get_object(*id).ok().cloned(),
            other => Some(other.clone()),
        }
    };
    let Some(Object::Dictionary(resources)) = owner.get(b"Resources").ok().and_then(deref) else {
        return Vec::new();
    };
    let Some(Object::Dictionary(names)) = resources.get(b"XObject").ok().and_then(deref) else {
        return Vec::new();
    };
    names
        .iter()
        .filter_map(|(_, object)| object.as_reference().ok())
        .collect()
}

/// Follows which forms each page and form draws, without recursion: a cycle, or a chain
/// deeper than [`MAX_FORM_DEPTH`], is refused.
fn check_forms(doc: &Document) -> Result<(), ParseError> {
    // The forms each form draws. Any stream but an image counts as a form: the extractor
    // draws an XObject whose subtype is missing or garbled as one. A form without its own
    // resources draws with those of whoever draws it, so it may draw anything they name.
    let mut draws: HashMap<ObjectId, Vec<ObjectId>> = HashMap::new();
    let mut bare = Vec::new();
    for (id, object) in &doc.objects {
        if let Object::Stream(stream) = object
            && stream.dict.get(b"Subtype").and_then(Object::as_name).ok() != Some(b"Image")
        {
            if stream.dict.has(b"Resources") {
                draws.insert(*id, xobjects(doc, &stream.dict));
            } else {
                bare.push(*id);
            }
        }
    }
    let mut named: Vec<Vec<ObjectId>> = doc
        .objects
        .values()
        .filter_map(|object| match object {
            Object::Dictionary(dict) => Some(xobjects(doc, dict)),
            Object::Stream(stream) => Some(xobjects(doc, &stream.dict)),
            _ => None,
        })
        .filter(|names| !names.is_empty())
        .collect();
    named.dedup();
    for id in bare {
        let inherited = named
            .iter()
            .filter(|names| names.contains(&id))
            .flatten()
            .copied()
            .collect();
        draws.insert(id, inherited);
    }
    // Depth of the deepest chain below each form; absent while not yet known.
    let mut depth: HashMap<ObjectId, usize> = HashMap::new();
    let mut on_path: HashMap<ObjectId, bool> = HashMap::new();
    for &start in draws.keys() {
        if depth.contains_key(&start) {
            continue;
        }
        // Iterative depth-first search: (form, index of the next child to visit).
        let mut stack = vec![(start, 0usize)];
        on_path.insert(start, true);
        while let Some(&mut (form, ref mut next)) = stack.last_mut() {
            let children = draws.get(&form).map(Vec::as_slice).unwrap_or(&[]);
            if let Some(&child) = children.get(*next) {
                *next += 1;
                if !draws.contains_key(&child) || depth.contains_key(&child) {
                    continue;
                }
                if on_path.get(&child) == Some(&true) {
                    return refuse(format!(
                        "form XObject {} {} draws itself (through {} form(s)); drawing it would never end",
                        child.0,
                        child.1,
                        stack.len()
                    ));
                }
                on_path.insert(child, true);
                stack.push((child, 0));
                if stack.len() > MAX_FORM_DEPTH {
                    return refuse(format!(
                        "form XObjects nest more than {MAX_FORM_DEPTH} deep"
                    ));
                }
            } else {
                let below = children
                    .iter()
                    .filter_map(|c| depth.get(c))
                    .max()
                    .map_or(0, |d| d + 1);
                if below > MAX_FORM_DEPTH {
                    return refuse(format!(
                        "form XObjects nest more than {MAX_FORM_DEPTH} deep"
                    ));
                }
                depth.insert(form, below);
                on_path.insert(form, false);
                stack.pop();
            }
        }
    }
    Ok(())
}
