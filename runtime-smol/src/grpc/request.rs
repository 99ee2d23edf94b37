//! The request JSON a GraphQL field's arguments make, shaped for the proto3
//! JSON mapping before it becomes a message: `@oneOf` input objects that
//! stand for a `oneof` are flattened into their member (docs/schema.md), and
//! a value that does not fit is reported with the proto field it was meant
//! for.

use prost_reflect::{DynamicMessage, Kind, MessageDescriptor};
use serde_json::{Map, Value};

/// Flattens, in `value` (a JSON object for `message`), every key that names
/// a `oneof` of the message (by proto or lowerCamelCase name, and not a
/// field) and holds an object: `{"payment": {"card": {...}}}` becomes
/// `{"card": {...}}`. Recurses into message fields and lists of messages.
pub(crate) fn flatten_oneofs(message: &MessageDescriptor, value: &mut Value) {
    let Value::Object(object) = value else {
        return;
    };
    let keys: Vec<String> = object.keys().cloned().collect();
    for key in keys {
        if find_field(message, &key).is_some() {
            continue;
        }
        let is_oneof = message
            .oneofs()
            .filter(|o| !o.is_synthetic())
            .any(|o| o.name() == key || terminus_core::graphql::lower_camel(o.name()) == key);
        if !is_oneof {
            continue;
        }
        if let Some(Value::Object(members)) = object.remove(&key) {
            for (member, inner) in members {
                if !inner.is_null() {
                    object.insert(member, inner);
                }
            }
        }
    }
    for (key, inner) in object.iter_mut() {
        let Some(field) = find_field(message, key) else {
            continue;
        };
        if let Kind::Message(child) = field.kind() {
            if field.is_map() {
                continue;
            }
            match inner {
                Value::Array(items) if field.is_list() => {
                    for item in items {
                        flatten_oneofs(&child, item);
                    }
                }
                Value::Object(_) => flatten_oneofs(&child, inner),
                _ => {}
            }
        }
    }
}

fn find_field(message: &MessageDescriptor, key: &str) -> Option<prost_reflect::FieldDescriptor> {
    message
        .fields()
        .find(|f| f.json_name() == key || f.name() == key)
}

/// Why `value` is not a valid `message`, naming the innermost proto field
/// that does not take its value (`terminus.shop.v1.OrderLine.quantity`),
/// given that decoding the whole failed with `error`.
pub(crate) fn explain(message: &MessageDescriptor, value: &Value, error: &str) -> String {
    match culprit(message, value) {
        Some((field, reason)) => format!("request field {field}: {reason}"),
        None => format!("invalid {}: {error}", message.full_name()),
    }
}

/// The first field whose value alone does not decode, innermost first.
fn culprit(message: &MessageDescriptor, value: &Value) -> Option<(String, String)> {
    let Value::Object(object) = value else {
        return None;
    };
    for (key, inner) in object {
        let Some(field) = find_field(message, key) else {
            return Some((
                format!("{}.{key}", message.full_name()),
                format!("{} has no field {key}", message.full_name()),
            ));
        };
        let mut alone = Map::new();
        alone.insert(key.clone(), inner.clone());
        let Err(error) = DynamicMessage::deserialize(message.clone(), Value::Object(alone)) else {
            continue;
        };
        if let Kind::Message(child) = field.kind() {
            if !field.is_map() {
                let deeper = match inner {
                    Value::Array(items) if field.is_list() => {
                        items.iter().find_map(|item| culprit(&child, item))
                    }
                    other => culprit(&child, other),
                };
                if deeper.is_some() {
                    return deeper;
                }
            }
        }
        return Some((field.full_name().to_owned(), error.to_string()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_reflect::DescriptorPool;
    use serde_json::json;

    fn message(name: &str) -> MessageDescriptor {
        DescriptorPool::decode(terminus_proto::SHOP_DESCRIPTOR_SET)
            .unwrap()
            .get_message_by_name(name)
            .unwrap()
    }

    #[test]
    fn one_of_inputs_become_their_member() {
        let create = message("terminus.shop.v1.CreateOrderRequest");
        let mut value = json!({"customerId": "c", "payment": {"bankTransfer": {"iban": "X"}}});
        flatten_oneofs(&create, &mut value);
        assert_eq!(
            value,
            json!({"customerId": "c", "bankTransfer": {"iban": "X"}})
        );
        DynamicMessage::deserialize(create, value).unwrap();
        let list = message("terminus.shop.v1.ListProductsRequest");
        let mut value =
            json!({"filter": {"query": {"skuPrefix": "LAMP", "namePrefix": null}, "tags": ["a"]}});
        flatten_oneofs(&list, &mut value);
        assert_eq!(
            value,
            json!({"filter": {"skuPrefix": "LAMP", "tags": ["a"]}})
        );
    }

    #[test]
    fn a_value_that_does_not_fit_names_its_proto_field() {
        let create = message("terminus.shop.v1.CreateOrderRequest");
        let value = json!({"customerId": "c", "lines": [{"sku": "A", "quantity": 1}, {"sku": "B", "quantity": -1}]});
        let error = DynamicMessage::deserialize(create.clone(), value.clone()).unwrap_err();
        let explained = explain(&create, &value, &error.to_string());
        assert!(
            explained.starts_with("request field terminus.shop.v1.OrderLine.quantity: "),
            "{explained}"
        );
    }
}
