"""An MQTT client set up from the broker config: TLS, login, and no reconnects of its own
(whoever owns a connection decides how to come back)."""

import ssl

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from edgewatch.agent.config import Broker
from edgewatch.agent.credentials import credential


def make_client(
    broker: Broker, client_id: str, protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv311
) -> mqtt.Client:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=True if protocol == MQTTProtocolVersion.MQTTv311 else None,
        protocol=protocol,
        reconnect_on_failure=False,
    )
    if broker.username is not None:
        client.username_pw_set(broker.username, broker.password())
    if broker.tls is not None:
        tls = broker.tls
        client.tls_set(
            ca_certs=str(credential(tls.ca)),
            certfile=str(credential(tls.cert)) if tls.cert else None,
            keyfile=str(credential(tls.key)) if tls.key else None,
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    return client


def broker_url(broker: Broker) -> str:
    return f"{'mqtts' if broker.tls else 'mqtt'}://{broker.host}:{broker.port}"
