//! Every header the spec describes, every way to break one, and every prefix of a valid one.

use super::*;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn relayed(version: Version, source: &str, destination: &str) -> Header {
    Header {
        version,
        addresses: Some(Addresses {
            source: addr(source),
            destination: addr(destination),
        }),
    }
}

/// A v2 header: the fixed part with `ver_cmd` and `family`, then `payload`.
fn v2(ver_cmd: u8, family: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(ver_cmd);
    out.push(family);
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The INET address block of 192.0.2.1:56324 → 198.51.100.7:443.
const INET: [u8; 12] = [192, 0, 2, 1, 198, 51, 100, 7, 0xdc, 0x04, 0x01, 0xbb];

/// The INET6 address block of [2001:db8::1]:56324 → [2001:db8::7]:443.
fn inet6() -> Vec<u8> {
    let mut block = Vec::new();
    block.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
    block.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
    block.extend_from_slice(&[0xdc, 0x04, 0x01, 0xbb]);
    block
}

/// `header` followed by an HTTP request parses to `expected`, its length is exactly the
/// header's, and every proper prefix is incomplete (a truncated header is never taken for a
/// whole one, nor refused before it could be told apart).
fn assert_parses(header: &[u8], expected: Header) {
    let with_request = [header, b"GET / HTTP/1.1\r\n\r\n"].concat();
    assert_eq!(
        parse(&with_request),
        Ok(Some((expected, header.len()))),
        "{header:?}"
    );
    for end in 0..header.len() {
        assert_eq!(
            parse(&header[..end]),
            Ok(None),
            "prefix {end} of {header:?}"
        );
    }
}

#[test]
fn v1_headers() {
    assert_parses(
        b"PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n",
        relayed(Version::V1, "192.0.2.1:56324", "198.51.100.7:443"),
    );
    assert_parses(
        b"PROXY TCP6 2001:db8::1 2001:db8::7 56324 443\r\n",
        relayed(Version::V1, "[2001:db8::1]:56324", "[2001:db8::7]:443"),
    );
    assert_parses(
        b"PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n",
        relayed(Version::V1, "0.0.0.0:0", "255.255.255.255:65535"),
    );
    let unknown = Header {
        version: Version::V1,
        addresses: None,
    };
    assert_parses(b"PROXY UNKNOWN\r\n", unknown);
    // UNKNOWN: whatever follows up to CRLF is ignored, as the spec says.
    assert_parses(b"PROXY UNKNOWN ffff::1 ffff::2 65535 65535\r\n", unknown);
    // The longest line there can be.
    let longest = format!(
        "PROXY UNKNOWN {0} {0} 65535 65535\r\n",
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    );
    assert_eq!(longest.len(), V1_MAX_LEN);
    assert_parses(longest.as_bytes(), unknown);
}

#[test]
fn v1_refusals() {
    use Error::*;
    let cases: &[(&[u8], Error)] = &[
        (b"GET / HTTP/1.1\r\n", Signature),
        (b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", Signature),
        (b"PROXY\r\n", Signature),
        (b"PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n", Signature),
        (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", Family),
        (b"PROXY TCP4X", Family),
        (b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", Family),
        (b"PROXY UNKNOWNX\r\n", Family),
        (b"PROXY \r\n", Family),
        (b"PROXY TCP4\r\n", Malformed),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", Malformed),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", Malformed),
        (b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", Malformed),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", Malformed),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", Malformed),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", Malformed),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n", Malformed),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 +80 2\r\n", Malformed),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n", Malformed),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999999\r\n", Malformed),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", Malformed),
        (b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", Malformed),
        (b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", Malformed),
        (b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", Malformed),
        (b"PROXY TCP4 ::1 ::2 1 2\r\n", Malformed),
        (b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", Malformed),
        (b"PROXY TCP6 [::1] [::2] 1 2\r\n", Malformed),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \xff\r\n", Malformed),
        (b"PROXY TCP4 1.2.3.4\x005.6.7.8 1 2\r\n", Malformed),
    ];
    for (input, error) in cases {
        assert_eq!(
            parse(input),
            Err(*error),
            "{}",
            String::from_utf8_lossy(input)
        );
    }
    // No CRLF within the longest line there can be.
    let endless = [b"PROXY UNKNOWN ".as_slice(), &[b'f'; V1_MAX_LEN]].concat();
    assert_eq!(parse(&endless), Err(TooLong));
    assert_eq!(parse(&endless[..V1_MAX_LEN - 1]), Ok(None));
    let late_crlf = [&endless[..V1_MAX_LEN - 1], b"\r\n"].concat();
    assert_eq!(parse(&late_crlf), Err(TooLong));
}

#[test]
fn v2_headers() {
    assert_parses(
        &v2(0x21, 0x11, &INET),
        relayed(Version::V2, "192.0.2.1:56324", "198.51.100.7:443"),
    );
    assert_parses(
        &v2(0x21, 0x21, &inet6()),
        relayed(Version::V2, "[2001:db8::1]:56324", "[2001:db8::7]:443"),
    );
    // TLVs after the addresses are skipped (an empty one, then one of 3 bytes).
    let with_tlvs = [&INET[..], &[0x04, 0, 0], &[0xea, 0, 3, b'v', b'p', b'c']].concat();
    assert_parses(
        &v2(0x21, 0x11, &with_tlvs),
        relayed(Version::V2, "192.0.2.1:56324", "198.51.100.7:443"),
    );
    // UDP (DGRAM) addresses are still addresses.
    assert_parses(
        &v2(0x21, 0x12, &INET),
        relayed(Version::V2, "192.0.2.1:56324", "198.51.100.7:443"),
    );
    let no_addresses = Header {
        version: Version::V2,
        addresses: None,
    };
    // LOCAL: the balancer's own connection (a health check); whatever it carries is ignored.
    for local in [
        v2(0x20, 0x00, &[]),
        v2(0x20, 0x11, &INET),
        v2(0x20, 0x21, &[1, 2, 3]),
    ] {
        assert_parses(&local, no_addresses);
    }
    // PROXY of an unspecified family, or of UNIX sockets: no IP address to use.
    assert_parses(&v2(0x21, 0x00, &[]), no_addresses);
    assert_parses(&v2(0x21, 0x01, &[0xea, 0, 1, 7]), no_addresses);
    assert_parses(&v2(0x21, 0x31, &[b'/'; 216]), no_addresses);
    // The longest payload allowed.
    let tlv = [&[0xe0, 0x03, 0xf1][..], &[0; 0x3f1]].concat();
    let longest = v2(0x21, 0x11, &[&INET[..], &tlv].concat());
    assert_eq!(longest.len(), 16 + V2_MAX_PAYLOAD);
    assert_parses(
        &longest,
        relayed(Version::V2, "192.0.2.1:56324", "198.51.100.7:443"),
    );
}

#[test]
fn v2_refusals() {
    use Error::*;
    let valid = v2(0x21, 0x11, &INET);
    // Any byte of the signature wrong.
    for i in 0..V2_SIGNATURE.len() {
        let mut bad = valid.clone();
        bad[i] ^= 0x40;
        assert_eq!(parse(&bad), Err(Signature), "byte {i}");
        // Refused as soon as the wrong byte arrives.
        assert_eq!(parse(&bad[..=i]), Err(Signature), "byte {i}");
    }
    for ver_cmd in 0..=255u8 {
        let expected = match (ver_cmd >> 4, ver_cmd & 0x0f) {
            (2, 0 | 1) => continue,
            (2, _) => Command,
            _ => Version,
        };
        let bad = v2(ver_cmd, 0x11, &INET);
        assert_eq!(parse(&bad), Err(expected), "{ver_cmd:#x}");
        assert_eq!(parse(&bad[..13]), Err(expected), "{ver_cmd:#x}, at once");
    }
    for family in 0..=255u8 {
        if family >> 4 <= 3 && family & 0x0f <= 2 {
            continue;
        }
        let bad = v2(0x21, family, &INET);
        assert_eq!(parse(&bad), Err(Family), "{family:#x}");
        assert_eq!(parse(&bad[..14]), Err(Family), "{family:#x}, at once");
        // Even for LOCAL: the byte is not one a sender may write.
        assert_eq!(parse(&v2(0x20, family, &[])), Err(Family), "{family:#x}");
    }
    // A length over the bound is refused before its bytes are waited for.
    let mut too_long = valid[..16].to_vec();
    too_long[14..16].copy_from_slice(&(V2_MAX_PAYLOAD as u16 + 1).to_be_bytes());
    assert_eq!(parse(&too_long), Err(TooLong));
    too_long[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
    assert_eq!(parse(&too_long), Err(TooLong));
    // A length too short for the family's addresses.
    assert_eq!(parse(&v2(0x21, 0x11, &INET[..11])), Err(Malformed));
    assert_eq!(parse(&v2(0x21, 0x21, &inet6()[..35])), Err(Malformed));
    assert_eq!(parse(&v2(0x21, 0x21, &INET)), Err(Malformed));
    assert_eq!(parse(&v2(0x21, 0x31, &[b'/'; 215])), Err(Malformed));
    // TLVs that do not fill the rest exactly.
    for tlvs in [
        &[0x04][..],
        &[0x04, 0],
        &[0x04, 0, 2, 1],
        &[0x04, 0, 0, 0x05],
    ] {
        let bad = v2(0x21, 0x11, &[&INET[..], tlvs].concat());
        assert_eq!(parse(&bad), Err(Malformed), "{tlvs:?}");
    }
}

#[test]
fn written_headers_parse_back() {
    for version in Version::ALL.iter().copied() {
        for (source, destination) in [
            ("192.0.2.1:56324", "198.51.100.7:443"),
            ("[2001:db8::1]:1", "[::1]:65535"),
            ("0.0.0.0:0", "255.255.255.255:65535"),
        ] {
            let mut out = Vec::new();
            write(&mut out, version, addr(source), addr(destination));
            assert_eq!(
                parse(&out),
                Ok(Some((relayed(version, source, destination), out.len()))),
                "{version:?} {source} {destination}"
            );
        }
        // A dual-stack listener's view of an IPv4 client: written as IPv4.
        let mut out = Vec::new();
        write(
            &mut out,
            version,
            addr("[::ffff:192.0.2.1]:5"),
            addr("[::ffff:127.0.0.1]:80"),
        );
        let (header, _) = parse(&out).unwrap().unwrap();
        assert_eq!(header, relayed(version, "192.0.2.1:5", "127.0.0.1:80"));
        // Two families: both written as IPv6.
        let mut out = Vec::new();
        write(&mut out, version, addr("192.0.2.1:5"), addr("[::1]:80"));
        let (header, _) = parse(&out).unwrap().unwrap();
        assert_eq!(header, relayed(version, "[::ffff:192.0.2.1]:5", "[::1]:80"));
    }
    let mut out = Vec::new();
    write(
        &mut out,
        Version::V1,
        addr("192.0.2.1:56324"),
        addr("198.51.100.7:443"),
    );
    assert_eq!(out, b"PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n");
    out.clear();
    write(
        &mut out,
        Version::V2,
        addr("192.0.2.1:56324"),
        addr("198.51.100.7:443"),
    );
    assert_eq!(out, v2(0x21, 0x11, &INET));
}
