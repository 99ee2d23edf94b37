//! How field names and upstream keys spell each other: proto3 JSON's
//! lowerCamelCase and SQL's snake_case.

/// `seq_no` -> `seqNo`, as proto3 JSON names fields and as Terminus
/// reads a snake_case SQL column for a camelCase field.
pub fn lower_camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = !out.is_empty();
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// `customerId` -> `customer_id`: how SQL columns spell a camelCase field.
pub(crate) fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            if !out.is_empty() {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}
