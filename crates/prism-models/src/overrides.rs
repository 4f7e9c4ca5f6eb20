//! `--set KEY=VALUE` overrides of a card or a training config (`model.memory="dws-lstm"`,
//! `train.lr=1e-3`): each value is read as TOML (a bare word as a string) and goes through the
//! config's own deserialisation, so every field and its type check work the same way.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// An override that could not be applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("bad override {item:?}: {message}")]
pub struct OverrideError {
    /// The `key=value` as given.
    pub item: String,
    /// What is wrong with it.
    pub message: String,
}

impl OverrideError {
    fn new(item: &str, message: impl Into<String>) -> Self {
        Self {
            item: item.to_string(),
            message: message.into(),
        }
    }
}

/// Applies `key=value` overrides (`train.lr=1e-3`) to any config: each goes through TOML, so
/// every field, and its type check, works the same way, and a key the config does not know is
/// refused by name.
pub fn apply<T>(config: &mut T, overrides: &[String]) -> Result<(), OverrideError>
where
    T: Serialize + DeserializeOwned,
{
    for item in overrides {
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| OverrideError::new(item, "expected key=value"))?;
        let mut doc: toml::Value =
            toml::Value::try_from(&*config).map_err(|e| OverrideError::new(item, e.to_string()))?;
        let mut slot = &mut doc;
        for part in key.trim().split('.') {
            // Optional fields left out of the TOML can still be set.
            let table = slot
                .as_table_mut()
                .ok_or_else(|| OverrideError::new(item, format!("{part:?} is not in a table")))?;
            slot = table
                .entry(part.to_string())
                .or_insert(toml::Value::String(String::new()));
        }
        let parsed: toml::Value = toml::from_str::<toml::Table>(&format!("v = {}", value.trim()))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.trim().to_string()));
        *slot = parsed;
        let updated: T = doc
            .try_into()
            .map_err(|e: toml::de::Error| OverrideError::new(item, e.to_string()))?;
        // A key the config does not know is dropped by deserialising: refuse it by name.
        let back =
            toml::Value::try_from(&updated).map_err(|e| OverrideError::new(item, e.to_string()))?;
        let mut probe = Some(&back);
        for part in key.trim().split('.') {
            probe = probe.and_then(|v| v.get(part));
        }
        if probe.is_none() {
            return Err(OverrideError::new(
                item,
                format!("no field {:?}", key.trim()),
            ));
        }
        *config = updated;
    }
    Ok(())
}

/// Applies overrides to a card and reads the result back through the card's own `parse`, so
/// it is checked exactly like a card file (`--set model.fpn_scales=5` is refused there).
pub fn apply_to_card<T>(
    card: &T,
    overrides: &[String],
    name: &str,
    parse: fn(&str, &str) -> Result<T, crate::zoo::ZooError>,
) -> Result<T, crate::zoo::ZooError>
where
    T: Clone + Serialize + DeserializeOwned,
{
    let source_name = format!("{name} with --set");
    let parse_error = |message: String| crate::zoo::ZooError::Parse {
        source_name: source_name.clone(),
        message,
    };
    let mut updated = card.clone();
    apply(&mut updated, overrides).map_err(|e| parse_error(e.to_string()))?;
    let text = toml::to_string(&updated).map_err(|e| parse_error(e.to_string()))?;
    parse(&text, &source_name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zoo::ModelCard;

    #[test]
    fn card_fields_are_set_by_path_and_unknown_keys_refused() {
        let mut card = ModelCard::builtin("rvt-tiny-synth").unwrap();
        apply(
            &mut card,
            &["model.memory=dws-lstm".into(), "model.fpn_scales=4".into()],
        )
        .unwrap();
        assert_eq!(card.model.memory, crate::zoo::Memory::DwsLstm);
        assert_eq!(card.model.fpn_scales, 4);
        let err = apply(&mut card, &["model.atention=full".into()]).unwrap_err();
        assert!(err.message.contains("model.atention"), "{err}");
        let err = apply(&mut card, &["model.fpn_scales=three".into()]).unwrap_err();
        assert!(err.to_string().contains("fpn_scales"), "{err}");
        assert!(apply(&mut card, &["model.memory".into()]).is_err());
    }
}
