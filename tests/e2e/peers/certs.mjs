// tests/e2e/peers/certs.mjs — throwaway certificates for the TLS tests, made at
// test time with the openssl CLI in a fresh temporary directory (no key is ever
// committed). makeCerts() returns the paths of:
//   ca        — a CA certificate (PEM), what otpd is told to trust (tls_ca_file)
//   good      — {key, cert}: a server certificate the CA signed for 127.0.0.1 and localhost
//   wrongName — {key, cert}: signed by the CA, but for smsc.other.example only
//   otherCa   — {key, cert}: for 127.0.0.1, signed by a second CA otpd does not trust
// and remove() deletes the directory. Keys are P-256, valid for two days.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

function openssl(dir, args) {
    execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], timeout: 30000 });
}

function makeCa(dir, name) {
    openssl(dir, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
        '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=otpd e2e ${name}`,
        '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
    return { key: path.join(dir, `${name}.key`), cert: path.join(dir, `${name}.pem`) };
}

function makeLeaf(dir, name, ca, san, serial) {
    fs.writeFileSync(path.join(dir, `${name}.ext`),
        `subjectAltName=${san}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n`);
    openssl(dir, ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
        '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`]);
    openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', ca.cert, '-CAkey', ca.key, '-set_serial', String(serial),
        '-days', '2', '-extfile', `${name}.ext`, '-out', `${name}.pem`]);
    return { key: path.join(dir, `${name}.key`), cert: path.join(dir, `${name}.pem`) };
}

export function makeCerts() {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'otpd-e2e-certs-'));
    const ca = makeCa(dir, 'ca');
    const rogue = makeCa(dir, 'rogue-ca');
    return {
        dir,
        ca: ca.cert,
        good: makeLeaf(dir, 'smsc', ca, 'IP:127.0.0.1,DNS:localhost', 1001),
        wrongName: makeLeaf(dir, 'smsc-wrong-name', ca, 'DNS:smsc.other.example', 1002),
        otherCa: makeLeaf(dir, 'smsc-other-ca', rogue, 'IP:127.0.0.1,DNS:localhost', 1003),
        /** The PEM texts of a {key, cert} pair, as node's tls options want them. */
        pem: (pair) => ({ key: fs.readFileSync(pair.key), cert: fs.readFileSync(pair.cert) }),
        remove: () => {
            if (!process.env.OTPD_E2E_KEEP) fs.rmSync(dir, { recursive: true, force: true });
        },
    };
}
