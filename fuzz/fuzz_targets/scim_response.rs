//! A SCIM app's answers through the functions the provisioner's SCIM client
//! reads them with: the status and body (`read_answer`), then the body as a
//! `/ServiceProviderConfig` (`read_capabilities`), a list page of Users or
//! Groups (`read_page`) and a single created or fetched resource
//! (`read_resource`); and `Retry-After` values (`parse_retry_after`).
//!
//! Input: one selector byte, then text (invalid UTF-8 is replaced, as the
//! HTTP client does). The selector picks the status from a list of those
//! apps send; with its high bit set, the text's first line is the
//! `Retry-After` header and the rest the body.
//!
//! Checked beyond "no panic": every error names the request it answers.
#![no_main]

use hrsync_provisioner::scim::{
    parse_retry_after, read_answer, read_capabilities, read_page, read_resource,
};
use libfuzzer_sys::fuzz_target;

const STATUSES: [u16; 12] = [200, 201, 204, 400, 401, 404, 409, 412, 429, 500, 503, 299];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let status = STATUSES[usize::from(selector & 0x7f) % STATUSES.len()];
    let text = String::from_utf8_lossy(rest);
    let (retry_after, body) = if selector & 0x80 != 0 {
        match text.split_once('\n') {
            Some((header, body)) => (Some(header), body),
            None => (Some(text.as_ref()), ""),
        }
    } else {
        (None, text.as_ref())
    };
    if let Some(header) = retry_after {
        let _ = parse_retry_after(header);
    }
    let path = "/Users";
    let answer = match read_answer("GET", path, status, retry_after, body) {
        Ok(answer) => answer,
        Err(error) => {
            assert_eq!(error.request(), Some(("GET", path)));
            assert!(error.to_string().starts_with("GET /Users: "), "{error}");
            return;
        }
    };
    let _ = read_capabilities(answer.as_ref());
    if let Err(error) = read_page("GET", path, answer.clone()) {
        assert_eq!(error.request(), Some(("GET", path)), "{error}");
    }
    match read_resource("POST", path, answer) {
        Ok(resource) => assert!(resource["id"].as_str().is_some_and(|id| !id.is_empty())),
        Err(error) => assert_eq!(error.request(), Some(("POST", path)), "{error}"),
    }
});
