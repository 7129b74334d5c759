from service.client import ImageToAdd, StrataClient


def test_round_trip(client: StrataClient, collection: str) -> None:
    import io

    import skimage.data
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(skimage.data.chelsea()).save(buf, "JPEG")
    results = list(client.add_images(collection, [ImageToAdd("chelsea.jpg", buf.getvalue())]))
    assert [r.status for r in results] == ["added"]
    hits = client.search(collection, [buf.getvalue()], k=1)
    assert {d.depth: d.hits[0].uri for d in hits[0].results} == {
        "edges": "chelsea.jpg", "parts": "chelsea.jpg", "semantics": "chelsea.jpg"
    }
