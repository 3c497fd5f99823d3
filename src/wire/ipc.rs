//! Pacemaker's message header inside libqb IPC, in both layouts Pacemaker's tools speak.
//!
//! Both start with libqb's 24-byte response header (`id` at 0, `size` at 8, `error` at 16, each
//! 8-aligned) and are 40 bytes long; the NUL-terminated XML follows.
//!
//! | off | Pacemaker 2.1.x and 3.0.0 ([`IpcLayout::Compressing`]) | Pacemaker 3.0.1+ ([`IpcLayout::Multipart`]) |
//! |---|---|---|
//! | 24 | u32 `size_uncompressed` (XML + NUL) | u32 `size` (this part's payload, NUL included) |
//! | 28 | u32 `size_compressed` (bzip2 length when flag 0x1 is set) | u32 `flags` |
//! | 32 | u32 `flags` | u8 `version` = 1, then a pad byte, then u16 `part_id` at 34 |
//! | 36 | u8 `version` = 1 | padding (zero: the header is `calloc`ed) |
//!
//! Both keep `PCMK__IPC_VERSION` at 1, so the layout is told apart by where the 1 sits: byte 36
//! (the old layout; byte 32 there is the low byte of the flags, 0 or 0x1 for "compressed") or
//! byte 32 with byte 36 zero (3.0.1+). Each candidate's size fields must also match the message.
//! Large messages are bzip2-compressed in the old layout and split into parts (flags
//! `crm_ipc_multipart`, `crm_ipc_multipart_end`, the same `id`, `part_id` counting up) in the new
//! one; [`IpcReader`] reassembles a connection's parts, [`encode`] produces either.

use std::io::Read;

use super::xml::Element;

pub const IPC_HEADER_LEN: usize = 40;
/// `PCMK__IPC_VERSION` (1 in every layout so far).
pub const IPC_VERSION: u8 = 1;
/// Largest message reassembled or decompressed; larger ones are refused (the remote link caps
/// messages at 20 MiB too, see `wire::frame::DEFAULT_MAX_MESSAGE`).
pub const MAX_IPC_MESSAGE: usize = 20 * 1024 * 1024;

/// `enum crm_ipc_flags` bits used here.
pub mod flags {
    pub const COMPRESSED: u32 = 0x1;
    pub const PROXIED: u32 = 0x100;
    pub const CLIENT_RESPONSE: u32 = 0x200;
    pub const SERVER_EVENT: u32 = 0x10000;
    pub const PROXIED_RELAY_RESPONSE: u32 = 0x40000;
    /// Pacemaker 3.0.1+: a part of a message split over several IPC messages.
    pub const MULTIPART: u32 = 1 << 19;
    /// Pacemaker 3.0.1+: the last part.
    pub const MULTIPART_END: u32 = 1 << 20;
}

/// Which header a peer speaks; a tool speaks one for its whole connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IpcLayout {
    /// Pacemaker 2.1.x and 3.0.0: two size fields, large payloads bzip2-compressed.
    #[default]
    Compressing,
    /// Pacemaker 3.0.1 and later: one size field and a part id, large payloads split.
    Multipart,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IpcWireError {
    #[error("IPC message of {0} bytes is shorter than Pacemaker's 40-byte header")]
    Short(usize),
    #[error(
        "IPC header matches no Pacemaker layout (version byte at 32 is {at32}, at 36 is {at36}; Pacemaker 2.1.x/3.0.0 put 1 at 36, 3.0.1+ at 32)"
    )]
    Layout { at32: u8, at36: u8 },
    #[error("IPC header sizes do not match the message ({0})")]
    Sizes(String),
    #[error("IPC message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("IPC message parts out of order ({0})")]
    Parts(String),
    #[error("IPC message in the {found:?} layout on a connection that spoke {expected:?}")]
    LayoutChanged {
        expected: IpcLayout,
        found: IpcLayout,
    },
    #[error("cannot decompress IPC payload: {0}")]
    Decompress(String),
    #[error("IPC payload is not UTF-8 XML: {0}")]
    Payload(String),
}

/// A decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpcMessage {
    pub id: u32,
    pub flags: u32,
    pub xml: Element,
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_ne_bytes([b[off], b[off + 1]])
}

impl IpcLayout {
    /// Which layout `data` (one message as libqb delivered it, header included) is in.
    pub fn detect(data: &[u8]) -> Result<IpcLayout, IpcWireError> {
        if data.len() < IPC_HEADER_LEN {
            return Err(IpcWireError::Short(data.len()));
        }
        let (at32, at36) = (data[32], data[36]);
        let body = data.len() - IPC_HEADER_LEN;
        if at36 == IPC_VERSION {
            let (plain, packed) = (u32_at(data, 24) as usize, u32_at(data, 28) as usize);
            let compressed = u32_at(data, 32) & flags::COMPRESSED != 0;
            let claimed = if compressed { packed } else { plain };
            if claimed > body || (!compressed && packed != 0) {
                return Err(IpcWireError::Sizes(format!(
                    "payload {claimed}, compressed {packed}, body {body}"
                )));
            }
            Ok(IpcLayout::Compressing)
        } else if at32 == IPC_VERSION && data[36..40] == [0; 4] {
            let size = u32_at(data, 24) as usize;
            if size > body {
                return Err(IpcWireError::Sizes(format!("part {size} > body {body}")));
            }
            Ok(IpcLayout::Multipart)
        } else {
            Err(IpcWireError::Layout { at32, at36 })
        }
    }
}

/// Decodes one complete message (not a part of one) in either layout.
pub fn decode(data: &[u8]) -> Result<IpcMessage, IpcWireError> {
    let mut reader = IpcReader::default();
    match reader.push(data)? {
        Some(m) => Ok(m),
        None => Err(IpcWireError::Parts(
            "first part of a multipart message".into(),
        )),
    }
}

/// One connection's incoming messages: learns the layout from the first message, then holds it
/// (a tool does not change its library mid-connection), and reassembles multipart messages.
#[derive(Debug, Default)]
pub struct IpcReader {
    layout: Option<IpcLayout>,
    /// A multipart message being reassembled: its id, flags and the payload so far (no NULs).
    partial: Option<(u32, u32, Vec<u8>)>,
}

impl IpcReader {
    /// The layout this connection speaks; the old one until the peer has sent anything.
    pub fn layout(&self) -> IpcLayout {
        self.layout.unwrap_or_default()
    }

    /// Takes one IPC message; returns the message it completes, if any.
    pub fn push(&mut self, data: &[u8]) -> Result<Option<IpcMessage>, IpcWireError> {
        let found = IpcLayout::detect(data)?;
        match self.layout {
            Some(expected) if expected != found => {
                return Err(IpcWireError::LayoutChanged { expected, found });
            }
            _ => self.layout = Some(found),
        }
        let id = u32_at(data, 0);
        let body = &data[IPC_HEADER_LEN..];
        match found {
            IpcLayout::Compressing => {
                let msg_flags = u32_at(data, 32);
                let text = if msg_flags & flags::COMPRESSED != 0 {
                    decompress(
                        &body[..u32_at(data, 28) as usize],
                        u32_at(data, 24) as usize,
                    )?
                } else {
                    body[..u32_at(data, 24) as usize].to_vec()
                };
                finish(id, msg_flags, &text).map(Some)
            }
            IpcLayout::Multipart => {
                let msg_flags = u32_at(data, 28);
                let part = &body[..u32_at(data, 24) as usize];
                let part = part.split(|b| *b == 0).next().unwrap_or_default();
                let part_id = u16_at(data, 34);
                let whole = msg_flags & (flags::MULTIPART | flags::MULTIPART_END);
                match (whole, self.partial.take()) {
                    (0, None) => finish(id, msg_flags, part).map(Some),
                    (flags::MULTIPART, None) if part_id == 0 => {
                        self.partial = Some((id, msg_flags, part.to_vec()));
                        Ok(None)
                    }
                    (w, Some((first_id, first_flags, mut text)))
                        if w & flags::MULTIPART != 0 && part_id != 0 && first_id == id =>
                    {
                        if text.len() + part.len() > MAX_IPC_MESSAGE {
                            return Err(IpcWireError::TooLarge {
                                size: text.len() + part.len(),
                                limit: MAX_IPC_MESSAGE,
                            });
                        }
                        text.extend_from_slice(part);
                        if w & flags::MULTIPART_END != 0 {
                            finish(id, first_flags, &text).map(Some)
                        } else {
                            self.partial = Some((id, first_flags, text));
                            Ok(None)
                        }
                    }
                    (w, partial) => Err(IpcWireError::Parts(format!(
                        "part {part_id} of message {id} with flags {w:#x}, {}",
                        match partial {
                            Some((pid, ..)) => format!("message {pid} unfinished"),
                            None => "no message started".into(),
                        }
                    ))),
                }
            }
        }
    }
}

fn decompress(input: &[u8], uncompressed: usize) -> Result<Vec<u8>, IpcWireError> {
    if uncompressed > MAX_IPC_MESSAGE {
        return Err(IpcWireError::TooLarge {
            size: uncompressed,
            limit: MAX_IPC_MESSAGE,
        });
    }
    let mut out = Vec::with_capacity(uncompressed);
    bzip2::read::BzDecoder::new(input)
        .take(uncompressed as u64)
        .read_to_end(&mut out)
        .map_err(|e| IpcWireError::Decompress(e.to_string()))?;
    Ok(out)
}

/// The message from its (possibly NUL-terminated) text; multipart bits do not describe the whole.
fn finish(id: u32, msg_flags: u32, text: &[u8]) -> Result<IpcMessage, IpcWireError> {
    let text = text.split(|b| *b == 0).next().unwrap_or_default();
    let text = std::str::from_utf8(text).map_err(|e| IpcWireError::Payload(e.to_string()))?;
    let xml = Element::parse(text).map_err(|e| IpcWireError::Payload(e.to_string()))?;
    Ok(IpcMessage {
        id,
        flags: msg_flags & !(flags::MULTIPART | flags::MULTIPART_END),
        xml,
    })
}

/// Encodes a message in `layout` as one IPC message, or several when it would not fit in
/// `max_size` (the connection's buffer): the old layout compresses it with bzip2, the new one
/// splits it into parts as Pacemaker 3.0.1+ does (`max_size - 41` payload bytes per part).
pub fn encode(
    layout: IpcLayout,
    id: u32,
    msg_flags: u32,
    xml: &Element,
    max_size: usize,
) -> Vec<Vec<u8>> {
    let text = xml.to_xml().into_bytes();
    match layout {
        IpcLayout::Compressing => vec![encode_compressing(id, msg_flags, text, max_size)],
        IpcLayout::Multipart => encode_multipart(id, msg_flags, &text, max_size),
    }
}

fn qb_header(out: &mut Vec<u8>, id: u32, total: usize) {
    out.extend_from_slice(&(id as i32).to_ne_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(total as i32).to_ne_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&0i32.to_ne_bytes());
    out.extend_from_slice(&[0; 4]);
}

fn encode_compressing(id: u32, msg_flags: u32, mut payload: Vec<u8>, max_size: usize) -> Vec<u8> {
    payload.push(0);
    let uncompressed = payload.len();
    let mut msg_flags = msg_flags;
    let mut compressed_len = 0usize;
    if IPC_HEADER_LEN + uncompressed > max_size {
        let mut enc = bzip2::read::BzEncoder::new(&payload[..], bzip2::Compression::best());
        let mut out = Vec::new();
        if enc.read_to_end(&mut out).is_ok() {
            compressed_len = out.len();
            payload = out;
            msg_flags |= flags::COMPRESSED;
        }
    }
    let total = IPC_HEADER_LEN + payload.len();
    let mut out = Vec::with_capacity(total);
    qb_header(&mut out, id, total);
    out.extend_from_slice(&(uncompressed as u32).to_ne_bytes());
    out.extend_from_slice(&(compressed_len as u32).to_ne_bytes());
    out.extend_from_slice(&msg_flags.to_ne_bytes());
    out.extend_from_slice(&[IPC_VERSION, 0, 0, 0]);
    out.extend_from_slice(&payload);
    out
}

fn encode_multipart(id: u32, msg_flags: u32, text: &[u8], max_size: usize) -> Vec<Vec<u8>> {
    let chunk = max_size.saturating_sub(IPC_HEADER_LEN + 1).max(1);
    let mut parts = Vec::new();
    let mut offset = 0;
    loop {
        let rest = &text[offset..];
        // Pacemaker splits when header + rest + NUL reaches the buffer size.
        let more = IPC_HEADER_LEN + rest.len() + 1 >= max_size;
        let piece = if more {
            &rest[..chunk.min(rest.len())]
        } else {
            rest
        };
        let index = parts.len();
        let part_flags = match (more, index) {
            (true, _) => flags::MULTIPART,
            (false, 0) => 0,
            (false, _) => flags::MULTIPART | flags::MULTIPART_END,
        };
        let size = piece.len() + 1;
        let mut out = Vec::with_capacity(IPC_HEADER_LEN + size);
        qb_header(&mut out, id, IPC_HEADER_LEN + size);
        out.extend_from_slice(&(size as u32).to_ne_bytes());
        out.extend_from_slice(&(msg_flags | part_flags).to_ne_bytes());
        out.extend_from_slice(&[IPC_VERSION, 0]);
        out.extend_from_slice(&(index as u16).to_ne_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(piece);
        out.push(0);
        parts.push(out);
        offset += piece.len();
        if !more {
            return parts;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(layout: IpcLayout, id: u32, f: u32, xml: &Element, max: usize) -> Vec<u8> {
        let mut v = encode(layout, id, f, xml, max);
        assert_eq!(v.len(), 1);
        v.remove(0)
    }

    #[test]
    fn round_trip_plain_and_compressed() {
        let xml = Element::new("cib_command")
            .with_attr("cib_op", "cib_query")
            .with_attr("x", "a&b");
        let bytes = one(
            IpcLayout::Compressing,
            7,
            flags::CLIENT_RESPONSE,
            &xml,
            128 * 1024,
        );
        assert_eq!(bytes.len(), IPC_HEADER_LEN + xml.to_xml().len() + 1);
        assert_eq!(&bytes[8..12], &(bytes.len() as i32).to_ne_bytes());
        assert_eq!(bytes[36], 1);
        assert_eq!(
            decode(&bytes).unwrap(),
            IpcMessage {
                id: 7,
                flags: flags::CLIENT_RESPONSE,
                xml: xml.clone()
            }
        );

        let big = Element::new("cib").with_attr("data", "x".repeat(300_000));
        let bytes = one(IpcLayout::Compressing, 1, 0, &big, 128 * 1024);
        assert!(bytes.len() < 128 * 1024, "compressed to fit");
        let back = decode(&bytes).unwrap();
        assert_eq!(back.flags & flags::COMPRESSED, flags::COMPRESSED);
        assert_eq!(back.xml, big);
    }

    /// The 3.0.1+ header as Pacemaker's `pcmk__ipc_prepare_iov` fills it.
    #[test]
    fn multipart_layout_single_message_matches_pacemaker_3_0_1() {
        let xml = Element::new("cib_command").with_attr("cib_op", "cib_query");
        let text = xml.to_xml();
        let bytes = one(
            IpcLayout::Multipart,
            5,
            flags::CLIENT_RESPONSE,
            &xml,
            128 * 1024,
        );
        assert_eq!(bytes.len(), 40 + text.len() + 1);
        assert_eq!(u32_at(&bytes, 8) as usize, bytes.len(), "qb size");
        assert_eq!(u32_at(&bytes, 24) as usize, text.len() + 1, "size");
        assert_eq!(u32_at(&bytes, 28), flags::CLIENT_RESPONSE);
        assert_eq!((bytes[32], u16_at(&bytes, 34)), (1, 0));
        assert_eq!(&bytes[36..40], &[0; 4]);
        assert_eq!(IpcLayout::detect(&bytes), Ok(IpcLayout::Multipart));
        let m = decode(&bytes).unwrap();
        assert_eq!((m.id, m.flags, m.xml), (5, flags::CLIENT_RESPONSE, xml));
    }

    #[test]
    fn multipart_split_and_reassembly() {
        let max = 1024;
        let big = Element::new("cib").with_attr("data", "y".repeat(5000));
        let text_len = big.to_xml().len();
        let parts = encode(IpcLayout::Multipart, 9, flags::SERVER_EVENT, &big, max);
        assert_eq!(parts.len(), text_len.div_ceil(max - 41));
        for (i, p) in parts.iter().enumerate() {
            assert!(p.len() <= max, "part {i} fits the buffer");
            assert_eq!(u16_at(p, 34) as usize, i);
            assert_eq!(u32_at(p, 0), 9, "every part carries the message id");
            let f = u32_at(p, 28);
            assert_eq!(f & flags::MULTIPART, flags::MULTIPART);
            assert_eq!(
                f & flags::MULTIPART_END != 0,
                i == parts.len() - 1,
                "only the last part ends"
            );
        }
        let mut r = IpcReader::default();
        let mut got = None;
        for p in &parts {
            got = r.push(p).unwrap();
        }
        let m = got.expect("complete after the last part");
        assert_eq!(m.xml, big);
        assert_eq!(m.flags, flags::SERVER_EVENT, "part flags cleared");
        assert_eq!(r.layout(), IpcLayout::Multipart);

        // Exactly one chunk of text: Pacemaker sends it as a part and then an empty last part.
        let exact = Element::new("a").with_attr("d", "z".repeat(100));
        let len = exact.to_xml().len();
        let parts = encode(IpcLayout::Multipart, 1, 0, &exact, len + 41);
        assert_eq!(parts.len(), 2);
        assert_eq!(u32_at(&parts[1], 24), 1, "just the NUL");
        let mut r = IpcReader::default();
        assert_eq!(r.push(&parts[0]), Ok(None));
        assert_eq!(r.push(&parts[1]).unwrap().unwrap().xml, exact);
    }

    #[test]
    fn rejects_short_foreign_and_inconsistent_messages() {
        let x = Element::new("x");
        assert_eq!(decode(&[0; 10]), Err(IpcWireError::Short(10)));
        let mut bytes = one(IpcLayout::Compressing, 1, 0, &x, 1 << 20);
        bytes[36] = 2;
        assert_eq!(
            decode(&bytes),
            Err(IpcWireError::Layout { at32: 0, at36: 2 })
        );
        let mut bytes = one(IpcLayout::Compressing, 1, 0, &x, 1 << 20);
        bytes[24] = 200;
        assert!(matches!(decode(&bytes), Err(IpcWireError::Sizes(_))));
        let mut bytes = one(IpcLayout::Compressing, 1, 0, &x, 1 << 20);
        bytes[32] |= 1;
        bytes[28] = 3;
        assert!(matches!(decode(&bytes), Err(IpcWireError::Decompress(_))));
        // A decompressed size beyond the limit is refused before any allocation.
        let mut bytes = one(IpcLayout::Compressing, 1, 0, &x, 1 << 20);
        bytes[32] |= 1;
        bytes[28] = 3;
        bytes[24..28].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert!(matches!(decode(&bytes), Err(IpcWireError::TooLarge { .. })));
        // 3.0.1+ with a size beyond the body, and with junk in the padding.
        let mut bytes = one(IpcLayout::Multipart, 1, 0, &x, 1 << 20);
        bytes[24] = 200;
        assert!(matches!(decode(&bytes), Err(IpcWireError::Sizes(_))));
        let mut bytes = one(IpcLayout::Multipart, 1, 0, &x, 1 << 20);
        bytes[37] = 9;
        assert!(matches!(decode(&bytes), Err(IpcWireError::Layout { .. })));
    }

    #[test]
    fn parts_out_of_order_or_mixed_layouts_are_refused() {
        let big = Element::new("cib").with_attr("data", "q".repeat(3000));
        let parts = encode(IpcLayout::Multipart, 3, 0, &big, 1024);
        assert!(parts.len() >= 3);
        // A middle part with no first part.
        assert!(matches!(
            IpcReader::default().push(&parts[1]),
            Err(IpcWireError::Parts(_))
        ));
        // A part of another message in between.
        let mut r = IpcReader::default();
        r.push(&parts[0]).unwrap();
        let mut other = parts[1].clone();
        other[0] = 4;
        assert!(matches!(r.push(&other), Err(IpcWireError::Parts(_))));
        // A standalone message while one is unfinished.
        let mut r = IpcReader::default();
        r.push(&parts[0]).unwrap();
        let small = one(IpcLayout::Multipart, 5, 0, &Element::new("x"), 1024);
        assert!(matches!(r.push(&small), Err(IpcWireError::Parts(_))));
        // A connection does not switch layouts.
        let mut r = IpcReader::default();
        r.push(&small).unwrap();
        let old = one(IpcLayout::Compressing, 6, 0, &Element::new("x"), 1024);
        assert_eq!(
            r.push(&old),
            Err(IpcWireError::LayoutChanged {
                expected: IpcLayout::Multipart,
                found: IpcLayout::Compressing
            })
        );
    }
}
