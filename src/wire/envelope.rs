//! The envelope attributes carried on the root element of every remote message.

use super::xml::Element;

pub const MSG_TYPE: &str = "lrmd_remote_msg_type";
pub const MSG_ID: &str = "lrmd_remote_msg_id";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgType {
    Request,
    Reply,
    Notify,
}

impl MsgType {
    pub fn as_str(self) -> &'static str {
        match self {
            MsgType::Request => "request",
            MsgType::Reply => "reply",
            MsgType::Notify => "notify",
        }
    }

    /// Pacemaker compares the type case-insensitively.
    pub fn of(el: &Element) -> Option<MsgType> {
        let t = el.attr(MSG_TYPE)?;
        [MsgType::Request, MsgType::Reply, MsgType::Notify]
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(t))
    }
}

/// The request id, which a reply must echo (missing or garbage counts as 0, as in Pacemaker).
pub fn msg_id(el: &Element) -> i64 {
    el.attr_i64(MSG_ID).unwrap_or(0)
}

/// Stamps the envelope; notifies always carry id 0.
pub fn set_envelope(el: &mut Element, id: i64, kind: MsgType) {
    let id = if kind == MsgType::Notify { 0 } else { id };
    el.set_attr(MSG_ID, id);
    el.set_attr(MSG_TYPE, kind.as_str());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_is_case_insensitive_and_notify_id_is_zero() {
        let mut el = Element::new("x")
            .with_attr(MSG_TYPE, "REQUEST")
            .with_attr(MSG_ID, "5");
        assert_eq!(MsgType::of(&el), Some(MsgType::Request));
        assert_eq!(msg_id(&el), 5);
        set_envelope(&mut el, 9, MsgType::Notify);
        assert_eq!(el.attr(MSG_ID), Some("0"));
        assert_eq!(MsgType::of(&el), Some(MsgType::Notify));
    }
}
