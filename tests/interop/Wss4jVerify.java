// Verifies signed SOAP messages with Apache WSS4J (Debian libwss4j-java 1.6),
// the way a Java WS-Security service behind sealgate would.
//
// Usage: java Wss4jVerify CA_PEM SIGNERS_PEM FILE...
// The signer certificates (SIGNERS_PEM holds one or more) are in the keystore (for IssuerSerial, SKI and
// thumbprint references) and the CA in the truststore (for chain checks of
// a BinarySecurityToken). For each FILE prints one line:
//   ACCEPTED FILE signed=Body,Timestamp,...   or   REJECTED FILE: why
// and exits 0 only when every file was accepted.

import java.io.ByteArrayInputStream;
import java.io.FileInputStream;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.List;

import javax.security.auth.callback.CallbackHandler;
import javax.xml.parsers.DocumentBuilderFactory;

import org.apache.ws.security.WSConstants;
import org.apache.ws.security.WSDataRef;
import org.apache.ws.security.WSSConfig;
import org.apache.ws.security.WSSecurityEngine;
import org.apache.ws.security.WSSecurityEngineResult;
import org.apache.ws.security.components.crypto.Merlin;
import org.w3c.dom.Document;

public class Wss4jVerify {
    static List<X509Certificate> load(String path) throws Exception {
        List<X509Certificate> certs = new ArrayList<>();
        try (FileInputStream in = new FileInputStream(path)) {
            for (Certificate c : CertificateFactory.getInstance("X.509").generateCertificates(in)) {
                certs.add((X509Certificate) c);
            }
        }
        return certs;
    }

    public static void main(String[] args) throws Exception {
        WSSConfig.init();
        KeyStore keys = KeyStore.getInstance("PKCS12");
        keys.load(null, null);
        int n = 0;
        for (X509Certificate c : load(args[1])) {
            keys.setCertificateEntry("signer" + n++, c);
        }
        KeyStore trust = KeyStore.getInstance("PKCS12");
        trust.load(null, null);
        for (X509Certificate c : load(args[0])) {
            trust.setCertificateEntry("ca" + n++, c);
        }
        Merlin crypto = new Merlin();
        crypto.setKeyStore(keys);
        crypto.setTrustStore(trust);

        DocumentBuilderFactory dbf = DocumentBuilderFactory.newInstance();
        dbf.setNamespaceAware(true);
        CallbackHandler noPasswords = callbacks -> { };
        boolean all = true;
        for (int i = 2; i < args.length; i++) {
            String file = args[i];
            try {
                byte[] bytes = Files.readAllBytes(Paths.get(file));
                Document doc = dbf.newDocumentBuilder().parse(new ByteArrayInputStream(bytes));
                WSSecurityEngine engine = new WSSecurityEngine();
                List<WSSecurityEngineResult> results =
                    engine.processSecurityHeader(doc, null, noPasswords, crypto);
                List<String> signed = new ArrayList<>();
                boolean timestamp = false;
                if (results != null) {
                    for (WSSecurityEngineResult r : results) {
                        int action = (Integer) r.get(WSSecurityEngineResult.TAG_ACTION);
                        if (action == WSConstants.TS) {
                            timestamp = true;
                        }
                        if (action != WSConstants.SIGN) {
                            continue;
                        }
                        @SuppressWarnings("unchecked")
                        List<WSDataRef> refs = (List<WSDataRef>) r.get(WSSecurityEngineResult.TAG_DATA_REF_URIS);
                        for (WSDataRef ref : refs) {
                            signed.add(ref.getName().getLocalPart());
                        }
                    }
                }
                if (signed.isEmpty()) {
                    all = false;
                    System.out.println("REJECTED " + file + ": no signature processed");
                } else {
                    System.out.println("ACCEPTED " + file + " signed=" + String.join(",", signed)
                        + (timestamp ? " timestamp" : ""));
                }
            } catch (Exception e) {
                all = false;
                String why = String.valueOf(e.getMessage()).replace('\n', ' ');
                System.out.println("REJECTED " + file + ": " + e.getClass().getSimpleName() + ": " + why);
            }
        }
        System.exit(all ? 0 : 1);
    }
}
