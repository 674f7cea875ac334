// The smallest JVM management endpoint: GET /alive -> 200 OK with the JDK's
// built-in HTTP server. bench_startup measures it beside ukko as the floor
// any JVM node (Pekko Management included) starts from: Pekko loads far more.
import com.sun.net.httpserver.HttpServer;
import java.io.OutputStream;
import java.net.InetSocketAddress;

public class AliveServer {
    public static void main(String[] args) throws Exception {
        HttpServer s = HttpServer.create(new InetSocketAddress(args[0], Integer.parseInt(args[1])), 64);
        s.createContext("/alive", ex -> {
            byte[] ok = "OK".getBytes();
            ex.sendResponseHeaders(200, ok.length);
            try (OutputStream o = ex.getResponseBody()) { o.write(ok); }
        });
        s.start();
    }
}
