import paho.mqtt.publish as publish
import paho.mqtt.subscribe as subscribe

from tests.servers import Mosquitto


def test_mosquitto_fixture_delivers_retained_message(mosquitto: Mosquitto) -> None:
    publish.single("homecare/v1/s/b/button/d/status", b'{"ts":1,"seq":1,"state":"online"}',
                   qos=1, retain=True, hostname=mosquitto.host, port=mosquitto.port)
    msg = subscribe.simple("homecare/v1/#", hostname=mosquitto.host, port=mosquitto.port, qos=1)
    assert msg.payload == b'{"ts":1,"seq":1,"state":"online"}'
