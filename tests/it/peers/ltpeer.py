"""A libtorrent session that can talk to librqbit on loopback.

MSE/PE encryption is off (cas prefers it but falls back to plaintext; the encryption
tests turn it on through LT_SETTINGS); uTP is off (cas takes it, but
TCP is what the tests measure unless one says otherwise), and several connections per
IP are allowed; DHT, LSD, UPnP and NAT-PMP are
off so that nothing leaves loopback.
"""
import libtorrent as lt


def session(port, **extra):
    settings = {
        "listen_interfaces": "127.0.0.1:%s" % port,
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "out_enc_policy": int(lt.enc_policy.pe_disabled),
        "in_enc_policy": int(lt.enc_policy.pe_disabled),
        "allow_multiple_connections_per_ip": True,
        "alert_mask": lt.alert.category_t.error_notification,
    }
    settings.update(extra)
    return lt.session(settings)
