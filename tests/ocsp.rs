//! OCSP stapling (`OCSPFILE`, `OCSPFILE:name`): responses made at test
//! time by `openssl ocsp` acting as a responder (an index file, a
//! responder certificate, a CA, all made by openssl here), shown by
//! `openssl s_client -status`; responses unfit to staple (stale, for
//! another certificate, not successful, garbage) are not stapled and warn
//! once; no `OCSPFILE`, no staple and no warning; an unreadable file is 96.

mod common;

use common::*;
use der::asn1::{GeneralizedTime, OctetString};
use der::{Decode, Encode};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use x509_ocsp::{BasicOcspResponse, OcspGeneralizedTime, OcspResponse};

const BOTH: [&str; 2] = ["-tls1_3", "-tls1_2"];
const NO_STAPLE: &str = "OCSP response: no response sent";
const STAPLED: &str = "OCSP Response Status: successful (0x0)";
/// The SNI name of the second pair.
const SNI: &str = "mail.example";

/// A CA, two server certificates (the default pair with the CA in its
/// chain file, an SNI pair with the leaf alone) and the responses
/// `openssl ocsp` gives for them and for its own responder certificate.
struct OcspPki {
    dir: TempDir,
    ca: PathBuf,
    server: (PathBuf, PathBuf),
    sni: (PathBuf, PathBuf),
    good: PathBuf,
    good_sni: PathBuf,
    other: PathBuf,
}

fn p(path: &Path) -> &OsStr {
    path.as_os_str()
}

/// Makes a leaf `stem` for `cn` with `ext`, serial `serial`, signed by the
/// CA in `dir`.
fn leaf(dir: &TempDir, stem: &str, cn: &str, ext: &str, serial: &str) -> (PathBuf, PathBuf) {
    let key = dir.path().join(format!("{stem}.key"));
    let csr = dir.path().join(format!("{stem}.csr"));
    let cert = dir.path().join(format!("{stem}.pem"));
    run_openssl([
        OsStr::new("req"),
        "-new".as_ref(),
        "-newkey".as_ref(),
        "ec".as_ref(),
        "-pkeyopt".as_ref(),
        "ec_paramgen_curve:P-256".as_ref(),
        "-nodes".as_ref(),
        "-keyout".as_ref(),
        p(&key),
        "-out".as_ref(),
        p(&csr),
        "-subj".as_ref(),
        format!("/CN={cn}").as_ref(),
        "-addext".as_ref(),
        ext.as_ref(),
    ]);
    run_openssl([
        OsStr::new("x509"),
        "-req".as_ref(),
        "-in".as_ref(),
        p(&csr),
        "-CA".as_ref(),
        p(&dir.path().join("ca.pem")),
        "-CAkey".as_ref(),
        p(&dir.path().join("ca.key")),
        "-days".as_ref(),
        "2".as_ref(),
        "-set_serial".as_ref(),
        serial.as_ref(),
        "-copy_extensions".as_ref(),
        "copy".as_ref(),
        "-out".as_ref(),
        p(&cert),
    ]);
    (cert, key)
}

impl OcspPki {
    fn new(tag: &str) -> OcspPki {
        let dir = TempDir::new(tag);
        let ca = dir.path().join("ca.pem");
        run_openssl([
            OsStr::new("req"),
            "-x509".as_ref(),
            "-newkey".as_ref(),
            "ec".as_ref(),
            "-pkeyopt".as_ref(),
            "ec_paramgen_curve:P-256".as_ref(),
            "-nodes".as_ref(),
            "-keyout".as_ref(),
            p(&dir.path().join("ca.key")),
            "-out".as_ref(),
            p(&ca),
            "-subj".as_ref(),
            "/CN=OCSP Test CA".as_ref(),
            "-days".as_ref(),
            "2".as_ref(),
            "-addext".as_ref(),
            "basicConstraints=critical,CA:TRUE".as_ref(),
            "-addext".as_ref(),
            "keyUsage=keyCertSign,cRLSign".as_ref(),
        ]);
        let (server_leaf, server_key) = leaf(
            &dir,
            "server",
            "localhost",
            "subjectAltName=DNS:localhost",
            "0x1001",
        );
        let sni = leaf(
            &dir,
            "sni",
            SNI,
            &format!("subjectAltName=DNS:{SNI}"),
            "0x1002",
        );
        let responder = leaf(
            &dir,
            "responder",
            "OCSP Responder",
            "extendedKeyUsage=OCSPSigning",
            "0x2001",
        );
        let chain =
            std::fs::read_to_string(&server_leaf).unwrap() + &std::fs::read_to_string(&ca).unwrap();
        let server = (dir.write("server-chain.pem", chain), server_key);
        let index = dir.write(
            "index.txt",
            "V\t301231000000Z\t\t1001\tunknown\t/CN=localhost\n\
             V\t301231000000Z\t\t1002\tunknown\t/CN=mail.example\n",
        );
        let respond = |cert: &Path, out: &str| -> PathBuf {
            let req = dir.path().join(format!("{out}.req"));
            let resp = dir.path().join(out);
            run_openssl([
                OsStr::new("ocsp"),
                "-issuer".as_ref(),
                p(&ca),
                "-cert".as_ref(),
                p(cert),
                "-no_nonce".as_ref(),
                "-reqout".as_ref(),
                p(&req),
            ]);
            run_openssl([
                OsStr::new("ocsp"),
                "-index".as_ref(),
                p(&index),
                "-CA".as_ref(),
                p(&ca),
                "-rsigner".as_ref(),
                p(&responder.0),
                "-rkey".as_ref(),
                p(&responder.1),
                "-reqin".as_ref(),
                p(&req),
                "-respout".as_ref(),
                p(&resp),
                "-ndays".as_ref(),
                "1".as_ref(),
            ]);
            resp
        };
        let good = respond(&server_leaf, "good.der");
        let good_sni = respond(&sni.0, "sni.der");
        let other = respond(&responder.0, "other.der");
        OcspPki {
            dir,
            ca,
            server,
            sni,
            good,
            good_sni,
            other,
        }
    }

    /// s6-tlsd-io `-k 1` with `args`, `-d 5`, both pairs, and `env`.
    fn spawn(&self, args: &[&str], env: &[(&str, &Path)]) -> Spawn {
        let mut words = vec!["-k", "1", "-d", "5"];
        words.extend(args);
        words.extend(["3", "4"]);
        let mut spawn = Spawn::new(words)
            .app(3, 4)
            .notify(5)
            .cert(&self.server.0, &self.server.1)
            .env(format!("CERTFILE:{SNI}"), &self.sni.0)
            .env(format!("KEYFILE:{SNI}"), &self.sni.1);
        for (name, value) in env {
            spawn = spawn.env(*name, *value);
        }
        spawn
    }

    /// `openssl s_client -status VERSION` for `server_name`: its stdout
    /// and how the engine ended.
    fn status(&self, spawn: Spawn, version: &str, server_name: &str) -> (String, Exit) {
        let args: [&OsStr; 4] = [
            "-status".as_ref(),
            version.as_ref(),
            "-servername".as_ref(),
            server_name.as_ref(),
        ];
        let (out, _, exit) = s_client_session(spawn, &self.ca, &args);
        (out, exit)
    }

    /// The response for the default pair with its nextUpdate (and
    /// thisUpdate) moved into the past. Its signature no longer holds,
    /// which only the client could tell: the server judges the dates.
    fn stale(&self) -> PathBuf {
        let mut response = OcspResponse::from_der(&std::fs::read(&self.good).unwrap()).unwrap();
        let bytes = response.response_bytes.as_mut().unwrap();
        let mut basic = BasicOcspResponse::from_der(bytes.response.as_bytes()).unwrap();
        let at = |secs| {
            OcspGeneralizedTime(
                GeneralizedTime::from_unix_duration(Duration::from_secs(secs)).unwrap(),
            )
        };
        for single in &mut basic.tbs_response_data.responses {
            single.this_update = at(1_600_000_000);
            single.next_update = Some(at(1_600_086_400));
        }
        bytes.response = OctetString::new(basic.to_der().unwrap()).unwrap();
        self.dir.write("stale.der", response.to_der().unwrap())
    }
}

#[test]
fn stapled_for_the_default_pair_and_an_sni_pair() {
    let pki = OcspPki::new("ocsp-good");
    let env = [
        ("OCSPFILE", pki.good.as_path()),
        ("OCSPFILE:Mail.Example", pki.good_sni.as_path()),
    ];
    for version in BOTH {
        for (name, serial) in [("localhost", "1001"), (SNI, "1002")] {
            let (out, exit) = pki.status(pki.spawn(&[], &env), version, name);
            exit.assert_clean(0);
            assert!(out.contains(STAPLED), "{version} {name}: {out}");
            assert!(out.contains("Cert Status: good"), "{out}");
            assert!(
                out.contains(&format!("Serial Number: {serial}")),
                "{version} {name}: {out}"
            );
        }
    }
}

#[test]
fn no_ocspfile_no_staple_no_warning() {
    let pki = OcspPki::new("ocsp-none");
    for version in BOTH {
        let (out, exit) = pki.status(pki.spawn(&[], &[]), version, "localhost");
        exit.assert_clean(0);
        assert!(out.contains(NO_STAPLE), "{version}: {out}");
    }
}

/// Each unfit response: no staple, the handshake goes on, and one
/// warning line at the default verbosity; none at -v0.
#[test]
fn unfit_responses_are_not_stapled_and_warn() {
    let pki = OcspPki::new("ocsp-unfit");
    let stale = pki.stale();
    let garbage = pki.dir.write("garbage.der", b"\x30\x03garbage");
    // A well-formed OCSPResponse whose status is tryLater (3).
    let try_later = pki
        .dir
        .write("trylater.der", [0x30, 0x03, 0x0a, 0x01, 0x03]);
    let cases = [
        (
            &stale,
            "stale: its nextUpdate 2020-09-14T12:26:40Z has passed",
        ),
        (&pki.other, "the response is for another certificate"),
        (&garbage, "not an OCSP response: "),
        (&try_later, "response status is tryLater, not successful"),
    ];
    for (file, why) in cases {
        for version in BOTH {
            let spawn = pki.spawn(&[], &[("OCSPFILE", file)]);
            let (out, exit) = pki.status(spawn, version, "localhost");
            assert!(out.contains(NO_STAPLE), "{why} {version}: {out}");
            assert_eq!(exit.code, Some(0), "{:?}", exit.stderr);
            let expected = format!(
                "s6-tlsd-io: warning: OCSPFILE {}: not stapled: {why}",
                file.display()
            );
            assert!(
                exit.stderr.starts_with(&expected) && exit.stderr.lines().count() == 1,
                "{version}: {:?} should be one line starting {expected:?}",
                exit.stderr
            );
        }
        let spawn = pki.spawn(&["-v0"], &[("OCSPFILE", file)]);
        let (out, exit) = pki.status(spawn, "-tls1_3", "localhost");
        assert!(out.contains(NO_STAPLE), "{why} -v0: {out}");
        exit.assert_clean(0);
    }
}

/// The SNI pair's response is checked against the SNI pair's
/// certificate: the default pair's response is for another certificate.
#[test]
fn sni_response_is_checked_against_its_own_certificate() {
    let pki = OcspPki::new("ocsp-sni-other");
    let spawn = pki.spawn(&[], &[("OCSPFILE:mail.example", &pki.good)]);
    let (out, exit) = pki.status(spawn, "-tls1_3", SNI);
    assert!(out.contains(NO_STAPLE), "{out}");
    assert_eq!(exit.code, Some(0));
    assert!(
        exit.stderr.contains("OCSPFILE:mail.example")
            && exit.stderr.contains("for another certificate"),
        "{:?}",
        exit.stderr
    );
}

#[test]
fn unreadable_device_or_unmatched_ocspfile_is_96() {
    let pki = OcspPki::new("ocsp-bad");
    let missing = pki.dir.path().join("missing.der");
    let exit = pki
        .spawn(&[], &[("OCSPFILE", &missing)])
        .spawn(None)
        .wait_within(Duration::from_secs(10));
    exit.assert_fatal(
        96,
        &format!(
            "unable to read OCSPFILE {}: No such file or directory",
            missing.display()
        ),
    );
    let exit = pki
        .spawn(&[], &[("OCSPFILE", Path::new("/dev/zero"))])
        .spawn(None)
        .wait_within(Duration::from_secs(10));
    exit.assert_fatal(96, "OCSPFILE /dev/zero: not a regular file");
    let exit = pki
        .spawn(&[], &[("OCSPFILE:other.example", &pki.good)])
        .spawn(None)
        .wait_within(Duration::from_secs(10));
    exit.assert_fatal(
        96,
        "OCSPFILE:other.example is set but names no certificate pair",
    );
}
